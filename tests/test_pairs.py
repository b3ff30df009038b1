"""PairLayout: the order of the directed pairs, owned in one place."""
import pytest
import torch

from models import DispResNet, EgoPoseNet, ObjPoseNet
from pairs import PairLayout, make_directed_pairs
from projection import run_step

B = 2


def frame_ids(num_refs, batch=B):
    """Per-frame stack whose rows hold ``10 * frame + sample``: target frame 0, reference i frame i+1."""
    return torch.tensor([10.0 * f + s for f in range(1 + num_refs) for s in range(batch)])


@pytest.mark.parametrize('num_refs', [1, 2, 4])
def test_reverse_twice_is_the_identity_and_swaps_the_directions(num_refs):
    layout = PairLayout(num_refs)
    views, sources = layout.pair_frames(frame_ids(num_refs))
    stacked = torch.randn(layout.num_pairs * B, 3, 5)
    assert torch.equal(layout.reverse(layout.reverse(stacked)), stacked)
    assert torch.equal(layout.reverse(views), sources) and torch.equal(layout.reverse(sources), views)


@pytest.mark.parametrize('num_refs', [1, 2])
def test_pairing_follows_frame_pairs_halves_and_rows(num_refs):
    layout = PairLayout(num_refs)
    views, sources = layout.pair_frames(frame_ids(num_refs))
    pair = layout.pair_index(views.shape[0])
    for row in range(views.shape[0]):
        view_frame, source_frame = layout.frame_pairs()[pair[row]]
        assert views[row] == 10 * view_frame + row % B and sources[row] == 10 * source_frame + row % B
    assert (layout.forward_half(views) < 10).all() and (layout.backward_half(sources) < 10).all()
    for ref in range(num_refs):
        for sample in range(B):
            assert views[layout.row(B, sample, ref, forward=True)] == sample
            assert sources[layout.row(B, sample, ref, forward=True)] == 10 * (ref + 1) + sample
            assert views[layout.row(B, sample, ref, forward=False)] == 10 * (ref + 1) + sample
    target, *refs = layout.split_frames(frame_ids(num_refs))
    assert torch.equal(layout.stack_frames(target, refs), frame_ids(num_refs))


def test_the_step_pairs_images_masks_and_depths_in_one_order(toy_batch):
    tgt, refs, K, tgt_insts, ref_insts = toy_batch
    pairs = make_directed_pairs(tgt, refs, tgt_insts, ref_insts, K)
    layout = pairs.layout
    assert layout.num_refs == len(refs) and pairs.batch_size == tgt.shape[0]
    frames = layout.stack_frames(tgt, refs)
    views, sources = layout.pair_frames(frames)
    assert torch.equal(pairs.views, views) and torch.equal(pairs.sources, sources)
    # forward pair (t, r_1) holds the target's masks matched with r_1 and r_1's own
    row = layout.row(pairs.batch_size, sample=1, ref=1, forward=True)
    assert torch.equal(pairs.view_masks[row], tgt_insts[1][1, 1:])
    assert torch.equal(pairs.source_masks[row], ref_insts[1][1, 1:])
    assert torch.equal(layout.reverse(pairs.view_masks), pairs.source_masks)
    assert torch.equal(pairs.K, K.repeat(layout.num_pairs, 1, 1))
    torch.manual_seed(0)
    outputs = run_step(DispResNet(18), EgoPoseNet(), ObjPoseNet(), tgt, refs, K, tgt_insts, ref_insts)
    view_depths, source_depths = layout.pair_frames(outputs.depths)
    assert torch.equal(outputs.view_depths, view_depths)
