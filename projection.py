"""The two-stage, instance-aware projection of Insta-DM: the geometry and losses of one training step.

A sample holds a target frame and ``R`` reference frames.  Every (target, reference) pair is used
in both directions, so the step works on ``P = 2R`` *directed pairs* ``(view, source)``: the source
is warped into the view.  They are stacked on the batch axis (``N = P * B`` rows) in the order
:class:`pairs.PairLayout` owns (the forward half warps the references into the target, the backward
half the target into the references).  Forward and backward therefore share every line of code, and
each network runs once per step on the whole stack.  Names and conventions: docs/ARCHITECTURE.md.

The steps, each a function below:
1. ``estimate_ego_motion``: EgoPoseNet on background-only images, ``ego_source_from_view`` for every pair.
2. ``estimate_depths``: DispResNet on the target and the references.
3. ``first_projection``: forward-warp each source (and its instance masks) into its view with the
   source depth and the ego motion source -> view (both detached): camera motion removed.
4. ``estimate_object_motion``: ObjPoseNet on (view * M_k, ego-warped source * M'_k) for every existing
   instance ``k`` of every directed pair, in one batched call; missing instances get zero motion.
5. ``object_translation_field`` and ``MotionField.with_objects``: the ego motion everywhere plus each
   object's translation on its view mask.
6. ``second_projection``: ``inverse_warp_mof`` of each source into its view with the motion field.
7. ``compute_losses``: the terms of :data:`loss_terms.LOSS_TERMS` (photometric, geometry, smoothness,
   object size, motion-field consistency, height prior, mean disparity) and their weighted total.
"""
from dataclasses import dataclass, fields
from typing import Dict, Optional

import torch

import loss_functions as losses
from inverse_warp import forward_warp, inverse_warp_mof
from loss_terms import DEFAULT_WEIGHTS, LOSS_NAMES, weighted_total, weights_from_args
from models import depth_from_disparity
from motion_field import MotionField
from pairs import DirectedPairs, make_directed_pairs
from precision import NetworkPrecision


@dataclass
class LossOptions:
    """Loss weights (one per term of :data:`loss_terms.LOSS_TERMS`, same names) and switches (train.py's
    ``--with-*``, ``--padding-mode``, ``--rotation-mode``)."""

    photo: float = DEFAULT_WEIGHTS['photo']
    geometry: float = DEFAULT_WEIGHTS['geometry']
    smooth: float = DEFAULT_WEIGHTS['smooth']
    obj_size: float = DEFAULT_WEIGHTS['obj_size']
    mof_consistency: float = DEFAULT_WEIGHTS['mof_consistency']
    height_prior: float = DEFAULT_WEIGHTS['height_prior']
    mean_disparity: float = DEFAULT_WEIGHTS['mean_disparity']
    with_ssim: bool = False
    with_mask: bool = False
    with_auto_mask: bool = False
    with_only_obj: bool = False
    padding_mode: str = 'zeros'
    rotation_mode: str = 'euler'
    depth_scale: float = 1.0     # depth = depth_scale / disparity inside the step (1.0: the official objective)
    antisymmetric_ego_pose: bool = False  # pose = (f(view, source) - f(source, view)) / 2 (False: official)

    @classmethod
    def from_args(cls, args):
        return cls(**weights_from_args(args), with_ssim=args.with_ssim, with_mask=args.with_mask,
                   with_auto_mask=args.with_auto_mask, with_only_obj=args.with_only_obj,
                   padding_mode=args.padding_mode, rotation_mode=args.rotation_mode, depth_scale=args.depth_scale,
                   antisymmetric_ego_pose=args.antisymmetric_ego_pose)

    @property
    def weights(self):
        """``{term name: weight}``."""
        return {name: getattr(self, name) for name in LOSS_NAMES}


@dataclass
class SecondProjection:
    """What :func:`second_projection` gives for each directed pair (``[N,...]``)."""

    warped: torch.Tensor           # [N,3,H,W] source warped into the view with the motion field
    in_image: torch.Tensor         # [N,1,H,W] view pixels whose projection lies inside the source image
    projected_depth: torch.Tensor  # [N,1,H,W] source depth sampled at the projections
    computed_depth: torch.Tensor   # [N,1,H,W] depth of the view's points in the source camera
    flow: torch.Tensor             # [N,2,H,W] projected pixel minus view pixel


@dataclass
class StepResults:
    """The intermediate results of one step, from which :func:`compute_losses` makes the loss terms."""

    pairs: DirectedPairs
    frames: torch.Tensor                # [(1+R)*B,3,H,W] images of the frames: target, then each reference
    disparities: torch.Tensor           # [(1+R)*B,1,H,W] DispResNet's output on the frames
    depths: torch.Tensor                # [(1+R)*B,1,H,W]
    view_depths: torch.Tensor           # [N,1,H,W] depth of each pair's view
    source_depths: torch.Tensor         # [N,1,H,W] depth of each pair's source
    ego_source_from_view: torch.Tensor  # [N,6] EgoPoseNet pose view -> source (X_source = R X_view + t)
    ego_warped: torch.Tensor            # [N,3,H,W] source forward-warped into the view (first projection)
    ego_warped_masks: torch.Tensor      # [N,M,H,W] source instance masks forward-warped into the view, rounded
    ego_warp_valid: torch.Tensor        # [N,1,H,W] view pixels the first projection filled
    object_motion: torch.Tensor         # [N,M,3] ObjPoseNet translation view -> source of each instance
    object_translation: torch.Tensor    # [N,3,H,W] each object's translation on its view mask, 0 elsewhere
    motion_field: MotionField           # view -> source: ego rotation [N,3], translation [N,3,H,W]
    second: SecondProjection
    warp_valid: torch.Tensor            # [N,1,H,W] pixels valid in both projections
    height_prior: torch.Tensor          # DispResNet's learnable object height (scalar)


@dataclass
class StepOutputs(StepResults):
    """Everything one step computes: the intermediate results, the loss terms and their weighted total."""

    losses: Dict[str, torch.Tensor]
    total: torch.Tensor

    @classmethod
    def of(cls, results, terms, total):
        """The outputs of a step from its :class:`StepResults` and :func:`compute_losses`' terms and total."""
        return cls(**{f.name: getattr(results, f.name) for f in fields(results)}, losses=terms, total=total)


def background(masks):
    """``[N,M,H,W]`` masks -> ``[N,1,H,W]``: 1 where no instance is."""
    return 1 - (masks.sum(1, keepdim=True) > 0).to(masks.dtype)


def estimate_ego_motion(ego_pose_net, pairs, precision=NetworkPrecision(), antisymmetric=False):
    """EgoPoseNet on background-only images: ``ego_source_from_view`` ``[N,6]`` for each directed pair.

    ``antisymmetric`` (an experiment option, off in the official objective) returns ``(f(v,s) - f(s,v)) / 2``:
    the two directions of a pair get opposite poses by construction (the first-order inverse, exact for the
    translation of a pure translation), from the same network calls.
    """
    bg = background(pairs.view_masks) * background(pairs.source_masks)
    poses = precision(ego_pose_net, pairs.views * bg, pairs.sources * bg)
    if antisymmetric:
        poses = 0.5 * (poses - pairs.layout.reverse(poses))
    return poses


def estimate_depths(disp_net, frames, precision=NetworkPrecision(), depth_scale=1.0):
    """DispResNet on the stacked frames ``[(1+R)*B,3,H,W]`` in one call: ``(depths, disparities)``,
    each ``[(1+R)*B,1,H,W]``.

    ``depth = depth_scale / disparity``; ``depth_scale`` 1 is the official objective.  A smaller value
    changes only the unit of depth the step works in (the pose networks' translations follow it),
    which moves the starting point of training: see README, "Science: what instance-aware projection buys".
    """
    disparities = precision(disp_net, frames)
    return depth_from_disparity(disparities, depth_scale), disparities


def first_projection(pairs, source_depths, ego_source_from_view, rotation_mode='euler'):
    """Forward-warp every source image and its masks into its view with the ego motion source -> view.

    The motion source -> view of a pair is EgoPoseNet's estimate for the reverse pair.  Depths and poses
    are detached (the first projection only removes the camera motion).
    Returns ``(ego_warped [N,3,H,W], ego_warped_masks [N,M,H,W] rounded, ego_warp_valid [N,1,H,W])``.
    """
    ego_view_from_source = pairs.layout.reverse(ego_source_from_view).detach()
    stacked = torch.cat([pairs.sources, pairs.source_masks], 1)
    warped, _, filled = forward_warp(stacked, source_depths.detach(), ego_view_from_source, pairs.K,
                                     upscale=3, rotation_mode=rotation_mode)
    return warped[:, :3], warped[:, 3:].round(), filled


def estimate_object_motion(obj_pose_net, pairs, ego_warped, ego_warped_masks, precision=NetworkPrecision()):
    """ObjPoseNet translation view -> source of every existing instance of every directed pair, in one call.

    Instance ``k`` of pair ``p`` exists when its view mask is non-empty; the network sees the view
    masked by ``M_k`` and the ego-warped source masked by the warped source mask ``M'_k``.
    Returns ``[N,M,3]`` (zero for missing instances).
    """
    n, num_masks = pairs.view_masks.shape[:2]
    motion = pairs.views.new_zeros(n, num_masks, 3)
    exists = pairs.view_masks.flatten(2).amax(2) > 0
    if not bool(exists.any()):
        return motion
    row, instance = exists.nonzero(as_tuple=True)
    view_objects = pairs.views[row] * pairs.view_masks[row, instance].unsqueeze(1)
    source_objects = ego_warped[row] * ego_warped_masks[row, instance].unsqueeze(1)
    return motion.index_put((row, instance), precision(obj_pose_net, view_objects, source_objects))


def object_translation_field(object_motion, view_masks):
    """``[N,3,H,W]``: each object's translation ``[N,M,3]`` on its view mask ``[N,M,H,W]``, 0 elsewhere."""
    return torch.einsum('nmhw,nmc->nchw', view_masks, object_motion)


def second_projection(pairs, view_depths, source_depths, motion_field, options):
    """``inverse_warp_mof`` of every source into its view with the motion field: a :class:`SecondProjection`."""
    return SecondProjection(*inverse_warp_mof(pairs.sources, view_depths, source_depths, motion_field, pairs.K,
                                              padding_mode=options.padding_mode,
                                              rotation_mode=options.rotation_mode))


def compute_losses(results, options):
    """All loss terms of Insta-DM and their weighted total: ``(terms {name: scalar}, total)``.

    ``results``: the step's :class:`StepResults`.  Terms whose weight is 0 are not computed (they are
    reported as 0), except the photometric and geometry terms, which validation reports.
    """
    pairs, second, layout = results.pairs, results.second, results.pairs.layout
    obj_mask = 1 - background(pairs.view_masks) if options.with_only_obj else None
    diff_img, diff_depth, loss_mask = losses.photometric_and_geometry_maps(
        pairs.views, pairs.sources, second.warped, results.warp_valid, second.computed_depth,
        second.projected_depth, options.with_ssim, options.with_mask, options.with_auto_mask, obj_mask)
    zero = results.depths.new_zeros(())
    terms = {
        'photo': losses.pairwise_masked_means(diff_img, loss_mask, pairs.num_pairs).sum(),
        'geometry': losses.pairwise_masked_means(diff_depth, loss_mask, pairs.num_pairs).sum(),
    }
    per_frame = zip(layout.split_frames(results.depths), layout.split_frames(results.frames))
    terms['smooth'] = sum(losses.smooth_loss(d, img) for d, img in per_frame) if options.smooth else zero
    terms['obj_size'] = (losses.object_size_loss(results.view_depths, pairs.view_masks, pairs.K[:, 1, 1],
                                                 results.height_prior, pairs.num_pairs) / 2
                         if options.obj_size else zero)
    terms['mof_consistency'] = (losses.motion_field_consistency_loss(
        results.motion_field, second.flow, diff_depth, loss_mask, layout, rotation_mode=options.rotation_mode)
        if options.mof_consistency else zero)
    terms['height_prior'] = results.height_prior.reshape(())
    terms['mean_disparity'] = results.disparities.mean()
    return terms, weighted_total(terms, options.weights)


def unwrap(net):
    """The module inside a DataParallel or DistributedDataParallel wrapper (or the module itself)."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return net.module if isinstance(net, wrappers) else net


def run_step(disp_net, ego_pose_net, obj_pose_net, tgt_img, ref_imgs, K, tgt_insts, ref_insts,
             options: Optional[LossOptions] = None, precision: NetworkPrecision = NetworkPrecision()):
    """One forward pass of the Insta-DM objective (no optimiser step).

    Args:
        tgt_img: ``[B,3,H,W]`` normalised target; ref_imgs: list of R ``[B,3,H,W]``.
        K: ``[B,3,3]`` intrinsics.
        tgt_insts, ref_insts: lists of R ``[B,1+M,H,W]`` matched instance tensors.
        precision: how the three networks run (autocast, channels-last); geometry and losses stay float32.
    Returns:
        StepOutputs with the intermediate results, the loss terms and the total.
    """
    options = options or LossOptions()
    pairs = make_directed_pairs(tgt_img, ref_imgs, tgt_insts, ref_insts, K)
    frames = pairs.layout.stack_frames(tgt_img, ref_imgs)
    ego_source_from_view = estimate_ego_motion(ego_pose_net, pairs, precision, options.antisymmetric_ego_pose)
    depths, disparities = estimate_depths(disp_net, frames, precision, options.depth_scale)
    view_depths, source_depths = pairs.layout.pair_frames(depths)
    ego_warped, ego_warped_masks, ego_warp_valid = first_projection(pairs, source_depths, ego_source_from_view,
                                                                    options.rotation_mode)
    object_motion = estimate_object_motion(obj_pose_net, pairs, ego_warped, ego_warped_masks, precision)
    object_translation = object_translation_field(object_motion, pairs.view_masks)
    motion_field = MotionField.with_objects(ego_source_from_view, object_translation)
    second = second_projection(pairs, view_depths, source_depths, motion_field, options)
    results = StepResults(
        pairs=pairs, frames=frames, disparities=disparities, depths=depths, view_depths=view_depths,
        source_depths=source_depths, ego_source_from_view=ego_source_from_view, ego_warped=ego_warped,
        ego_warped_masks=ego_warped_masks, ego_warp_valid=ego_warp_valid, object_motion=object_motion,
        object_translation=object_translation, motion_field=motion_field, second=second,
        warp_valid=second.in_image * ego_warp_valid, height_prior=unwrap(disp_net).obj_height_prior)
    terms, total = compute_losses(results, options)
    return StepOutputs.of(results, terms, total)
