"""The directed (view, source) pairs of a training step and the one place that knows their order.

A sample holds a target frame and ``R`` reference frames.  Each (target, reference) pair is used in
both directions, so a step works on ``P = 2R`` *directed pairs* ``(view, source)``: the source is
warped into the view.  They are stacked on the batch axis, ``B`` rows per pair (``N = P * B`` rows):

    pairs 0 .. R-1   (target, r_0) .. (target, r_{R-1})   the *forward* half: references warped into the target
    pairs R .. 2R-1  (r_0, target) .. (r_{R-1}, target)   the *backward* half: the target warped into references

so pair ``p`` and pair ``(p + R) % P`` are the two directions of one (target, reference) pair.
Per-frame tensors (one network call on every frame) are stacked target first, then the references:
``[(1+R)*B, ...]``.  :class:`PairLayout` builds, pairs, reverses and splits these stacks; no other
module encodes the order (docs/ARCHITECTURE.md, "Conventions").
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PairLayout:
    """Stacking order of the ``2R`` directed pairs of a step with ``num_refs = R`` references."""

    num_refs: int

    @property
    def num_pairs(self):
        """``P = 2R``."""
        return 2 * self.num_refs

    @property
    def num_frames(self):
        """``1 + R``: the target and the references."""
        return 1 + self.num_refs

    def frame_pairs(self):
        """``(view frame, source frame)`` of each directed pair; frame 0 is the target, ``i + 1`` reference ``i``."""
        refs = range(1, self.num_frames)
        return [(0, r) for r in refs] + [(r, 0) for r in refs]

    def stack_frames(self, target, refs):
        """Target ``[B,...]`` and the list of R references -> per-frame stack ``[(1+R)*B,...]``."""
        return torch.cat([target] + list(refs))

    def split_frames(self, frames):
        """Per-frame stack ``[(1+R)*B,...]`` -> tuple of ``1 + R`` tensors ``[B,...]``, target first."""
        return frames.chunk(self.num_frames)

    def pair(self, target_side, reference_side):
        """Per-reference tensors -> their ``(view side, source side)`` stacks ``[P*B,...]``.

        Args:
            target_side: list of R ``[B,...]`` tensors of the target, one per reference (the target image
                repeated, or the target's instance masks matched with reference ``i``).
            reference_side: list of R ``[B,...]`` tensors of the references.
        """
        target_side, reference_side = list(target_side), list(reference_side)
        return torch.cat(target_side + reference_side), torch.cat(reference_side + target_side)

    def pair_frames(self, frames):
        """Per-frame stack ``[(1+R)*B,...]`` -> ``(view side, source side)`` ``[P*B,...]``."""
        target, *refs = self.split_frames(frames)
        return self.pair([target] * self.num_refs, refs)

    def repeat(self, per_sample):
        """``[B,...]`` tensor shared by every pair (the intrinsics) -> ``[P*B,...]``."""
        return per_sample.repeat(self.num_pairs, *([1] * (per_sample.dim() - 1)))

    def reverse(self, stacked):
        """Swap the two directions of every pair: rows of pair ``p`` <-> rows of pair ``(p + R) % P``."""
        chunks = stacked.reshape(self.num_pairs, -1, *stacked.shape[1:])
        return torch.roll(chunks, self.num_refs, dims=0).reshape(stacked.shape)

    def forward_half(self, stacked):
        """Rows of the forward pairs ``(target, r_i)``: ``[P*B,...]`` -> ``[R*B,...]``."""
        return stacked[:stacked.shape[0] // 2]

    def backward_half(self, stacked):
        """Rows of the backward pairs ``(r_i, target)``: ``[P*B,...]`` -> ``[R*B,...]``."""
        return stacked[stacked.shape[0] // 2:]

    def row(self, batch_size, sample=0, ref=0, forward=True):
        """Row of sample ``sample`` in the pair (target, ``r_ref``) (``forward``) or (``r_ref``, target)."""
        pair = ref if forward else self.num_refs + ref
        return pair * batch_size + sample

    def pair_index(self, num_rows, device=None):
        """``[P*B]`` long tensor: the directed pair of each row of a ``num_rows = P*B`` stack."""
        return torch.arange(self.num_pairs, device=device).repeat_interleave(num_rows // self.num_pairs)


def instance_masks(insts):
    """``[B,1+M,H,W]`` instance tensor (channel 0 = count) -> ``[B,M,H,W]`` binary masks."""
    return insts[:, 1:]


@dataclass
class DirectedPairs:
    """The images, instance masks and intrinsics of the directed pairs of a batch; ``N = P * B``."""

    views: torch.Tensor          # [N,3,H,W] the image each source is warped into
    sources: torch.Tensor        # [N,3,H,W] the image warped
    view_masks: torch.Tensor     # [N,M,H,W] instance masks of the view, channel k matched with source_masks[:, k]
    source_masks: torch.Tensor   # [N,M,H,W] instance masks of the source
    K: torch.Tensor              # [N,3,3]
    layout: PairLayout

    @property
    def num_pairs(self):
        return self.layout.num_pairs

    @property
    def num_refs(self):
        return self.layout.num_refs

    @property
    def batch_size(self):
        return self.views.shape[0] // self.num_pairs


def make_directed_pairs(tgt_img, ref_imgs, tgt_insts, ref_insts, K):
    """Stack the ``2R`` directed pairs of a batch (order: :class:`PairLayout`).

    Args:
        tgt_img: ``[B,3,H,W]``; ref_imgs: list of R ``[B,3,H,W]``.
        tgt_insts, ref_insts: lists of R ``[B,1+M,H,W]`` instance tensors (matched per reference).
        K: ``[B,3,3]``.
    """
    layout = PairLayout(len(ref_imgs))
    views, sources = layout.pair([tgt_img] * layout.num_refs, ref_imgs)
    view_masks, source_masks = layout.pair([instance_masks(i) for i in tgt_insts],
                                           [instance_masks(i) for i in ref_insts])
    return DirectedPairs(views=views, sources=sources, view_masks=view_masks, source_masks=source_masks,
                         K=layout.repeat(K), layout=layout)
