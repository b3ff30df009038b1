"""The two-stage, instance-aware projection of Insta-DM: the geometry and losses of one training step.

A sample holds a target frame and ``R`` reference frames.  Every (target, reference) pair is used
in both directions, so the step works on ``P = 2R`` *directed pairs* ``(view, source)`` stacked on
the batch axis in the order :class:`pairs.PairLayout` owns (the forward half warps the references
into the target, the backward half the target into the references).  Forward and backward
therefore share every line of code, and each network runs once per step on the whole stack.

The steps, each a function below:
1. ``estimate_ego_motion``: EgoPoseNet on background-only images, pose a -> b for every directed pair.
2. ``estimate_depths``: DispResNet on the target and the references.
3. ``first_projection``: forward-warp each source (and its instance masks) into its view with the
   source depth and the ego pose b -> a (both detached): camera motion removed.
4. ``estimate_object_motion``: ObjPoseNet on (view * M_k, ego-warped source * M'_k) for every existing
   instance ``k`` of every directed pair, in one batched call; missing instances get zero motion.
5. ``object_translation_field`` and ``MotionField.with_objects``: the ego pose everywhere plus each
   object's translation on its view mask.
6. ``second_projection``: ``inverse_warp_mof`` of each source into its view with the motion field.
7. ``compute_losses``: photometric, geometry, smoothness, object size, motion-field consistency,
   height prior and depth mean terms, and their weighted total.
"""
from dataclasses import dataclass
from typing import Dict, Optional

import torch

import loss_functions as losses
from inverse_warp import forward_warp, inverse_warp_mof
from models import depth_from_disparity
from motion_field import MotionField
from pairs import DirectedPairs, PairLayout, make_directed_pairs
from precision import NetworkPrecision

LOSS_NAMES = ('photo', 'geometry', 'smooth', 'obj_size', 'mof_consistency', 'height_prior', 'depth_mean')


@dataclass
class LossOptions:
    """Loss weights and switches (the ``-p -c -s -o -mc -hp -dm`` and ``--with-*`` flags of train.py)."""

    photo: float = 2.0
    geometry: float = 1.0
    smooth: float = 0.1
    obj_size: float = 0.02
    mof_consistency: float = 0.1
    height_prior: float = 0.0
    depth_mean: float = 0.0
    with_ssim: bool = False
    with_mask: bool = False
    with_auto_mask: bool = False
    with_only_obj: bool = False
    padding_mode: str = 'zeros'
    rotation_mode: str = 'euler'
    depth_scale: float = 1.0     # depth = depth_scale / disparity inside the step (1.0: the official objective)

    @classmethod
    def from_args(cls, args):
        return cls(photo=args.photo_loss_weight, geometry=args.geometry_consistency_weight,
                   smooth=args.smooth_loss_weight, obj_size=args.scale_loss_weight,
                   mof_consistency=args.mof_consistency_loss_weight, height_prior=args.height_loss_weight,
                   depth_mean=args.depth_loss_weight, with_ssim=args.with_ssim, with_mask=args.with_mask,
                   with_auto_mask=args.with_auto_mask, with_only_obj=args.with_only_obj,
                   padding_mode=args.padding_mode, rotation_mode=args.rotation_mode,
                   depth_scale=args.depth_scale)

    def weight(self, name):
        return getattr(self, name)


@dataclass
class StepOutputs:
    """Everything one step computes; the intermediate maps feed logging and the debug figures."""

    losses: Dict[str, torch.Tensor]
    total: torch.Tensor
    pairs: DirectedPairs
    depths: torch.Tensor            # [(1+R)*B,1,H,W]: target, then each reference
    view_depths: torch.Tensor       # [N,1,H,W]
    ego_poses: torch.Tensor         # [N,6] pose a -> b
    ego_warped: torch.Tensor        # [N,3,H,W] source forward-warped into the view (first projection)
    ego_warped_masks: torch.Tensor  # [N,M,H,W]
    ego_valid: torch.Tensor         # [N,1,H,W]
    obj_motion: torch.Tensor        # [N,M,3]
    object_translation: torch.Tensor  # [N,3,H,W] the objects' own translation on their view masks
    fields: MotionField             # rotation [N,3], translation [N,3,H,W]
    warped: torch.Tensor            # [N,3,H,W] source warped into the view (second projection)
    valid: torch.Tensor             # [N,1,H,W]


def background(masks):
    """``[N,M,H,W]`` masks -> ``[N,1,H,W]``: 1 where no instance is."""
    return 1 - (masks.sum(1, keepdim=True) > 0).to(masks.dtype)


def estimate_ego_motion(ego_pose_net, pairs, precision=NetworkPrecision()):
    """EgoPoseNet on background-only images: ``[N,6]`` pose a -> b for each directed pair."""
    bg = background(pairs.view_masks) * background(pairs.source_masks)
    return precision(ego_pose_net, pairs.views * bg, pairs.sources * bg)


def estimate_depths(disp_net, tgt_img, ref_imgs, precision=NetworkPrecision(), depth_scale=1.0):
    """DispResNet on target and references in one call: ``(depths, disparities)``, ``[(1+R)*B,1,H,W]``.

    ``depth = depth_scale / disparity``; ``depth_scale`` 1 is the official objective.  A smaller value
    changes only the unit of depth the step works in (the pose networks' translations follow it),
    which moves the starting point of training: see README, "Science: what instance-aware projection buys".
    """
    disparities = precision(disp_net, PairLayout(len(ref_imgs)).stack_frames(tgt_img, ref_imgs))
    return depth_from_disparity(disparities, depth_scale), disparities


def first_projection(pairs, source_depths, ego_poses, rotation_mode='euler'):
    """Forward-warp every source image and its masks into its view with the ego motion b -> a.

    Depths and poses are detached (the first projection only removes the camera motion).
    Returns ``(warped [N,3,H,W], warped_masks [N,M,H,W] rounded, valid [N,1,H,W])``.
    """
    poses_b_to_a = pairs.layout.reverse(ego_poses).detach()
    stacked = torch.cat([pairs.sources, pairs.source_masks], 1)
    warped, _, valid = forward_warp(stacked, source_depths.detach(), poses_b_to_a, pairs.K,
                                    upscale=3, rotation_mode=rotation_mode)
    return warped[:, :3], warped[:, 3:].round(), valid


def estimate_object_motion(obj_pose_net, pairs, ego_warped, ego_warped_masks, precision=NetworkPrecision()):
    """ObjPoseNet translation of every existing instance of every directed pair, in one call.

    Instance ``k`` of pair ``p`` exists when its view mask is non-empty; the network sees the view
    masked by ``M_k`` and the ego-warped source masked by the warped source mask ``M'_k``.
    Returns ``[N,M,3]`` (zero for missing instances).
    """
    n, num_masks = pairs.view_masks.shape[:2]
    motion = pairs.views.new_zeros(n, num_masks, 3)
    exists = pairs.view_masks.flatten(2).amax(2) > 0
    if not bool(exists.any()):
        return motion
    sample, instance = exists.nonzero(as_tuple=True)
    view_objects = pairs.views[sample] * pairs.view_masks[sample, instance].unsqueeze(1)
    source_objects = ego_warped[sample] * ego_warped_masks[sample, instance].unsqueeze(1)
    return motion.index_put((sample, instance), precision(obj_pose_net, view_objects, source_objects))


def object_translation_field(obj_motion, view_masks):
    """``[N,3,H,W]``: each object's translation ``[N,M,3]`` on its view mask ``[N,M,H,W]``, 0 elsewhere."""
    return torch.einsum('nmhw,nmc->nchw', view_masks, obj_motion)


def second_projection(pairs, view_depths, source_depths, fields, options):
    """``inverse_warp_mof`` of every source into its view; returns its five outputs."""
    return inverse_warp_mof(pairs.sources, view_depths, source_depths, fields, pairs.K,
                            padding_mode=options.padding_mode, rotation_mode=options.rotation_mode)


def compute_losses(pairs, options, tgt_img, ref_imgs, depths, disparities, view_depths, warped, valid,
                   projected_depth, computed_depth, flows, fields, height_prior):
    """All loss terms of Insta-DM and their weighted total.

    Terms whose weight is 0 are not computed (they are reported as 0), except the photometric and
    geometry terms, which validation reports.
    """
    obj_mask = 1 - background(pairs.view_masks) if options.with_only_obj else None
    diff_img, diff_depth, valid = losses.photometric_and_geometry_maps(
        pairs.views, pairs.sources, warped, valid, computed_depth, projected_depth,
        options.with_ssim, options.with_mask, options.with_auto_mask, obj_mask)
    zero = depths.new_zeros(())
    terms = {
        'photo': losses.pairwise_masked_means(diff_img, valid, pairs.num_pairs).sum(),
        'geometry': losses.pairwise_masked_means(diff_depth, valid, pairs.num_pairs).sum(),
    }
    frames = [tgt_img] + list(ref_imgs)
    terms['smooth'] = (sum(losses.smooth_loss(d, img) for d, img in zip(pairs.layout.split_frames(depths), frames))
                       if options.smooth else zero)
    terms['obj_size'] = (losses.object_size_loss(view_depths, pairs.view_masks, pairs.K[:, 1, 1], height_prior,
                                                 pairs.num_pairs) / 2 if options.obj_size else zero)
    terms['mof_consistency'] = (losses.motion_field_consistency_loss(
        fields, flows, diff_depth, valid, pairs.layout, rotation_mode=options.rotation_mode)
        if options.mof_consistency else zero)
    terms['height_prior'] = height_prior.reshape(())
    terms['depth_mean'] = disparities.mean()
    total = sum(options.weight(name) * terms[name] for name in LOSS_NAMES)
    return terms, total


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
        StepOutputs with the loss terms, the total and the intermediate maps.
    """
    options = options or LossOptions()
    pairs = make_directed_pairs(tgt_img, ref_imgs, tgt_insts, ref_insts, K)
    ego_poses = estimate_ego_motion(ego_pose_net, pairs, precision)
    depths, disparities = estimate_depths(disp_net, tgt_img, ref_imgs, precision, options.depth_scale)
    view_depths, source_depths = pairs.layout.pair_frames(depths)
    ego_warped, ego_warped_masks, ego_valid = first_projection(pairs, source_depths, ego_poses, options.rotation_mode)
    obj_motion = estimate_object_motion(obj_pose_net, pairs, ego_warped, ego_warped_masks, precision)
    object_translation = object_translation_field(obj_motion, pairs.view_masks)
    fields = MotionField.with_objects(ego_poses, object_translation)
    warped, valid, projected_depth, computed_depth, flows = second_projection(
        pairs, view_depths, source_depths, fields, options)
    valid = valid * ego_valid
    height_prior = unwrap(disp_net).obj_height_prior
    terms, total = compute_losses(pairs, options, tgt_img, ref_imgs, depths, disparities, view_depths, warped,
                                  valid, projected_depth, computed_depth, flows, fields, height_prior)
    return StepOutputs(losses=terms, total=total, pairs=pairs, depths=depths, view_depths=view_depths,
                       ego_poses=ego_poses, ego_warped=ego_warped, ego_warped_masks=ego_warped_masks,
                       ego_valid=ego_valid, obj_motion=obj_motion, object_translation=object_translation, fields=fields, warped=warped, valid=valid)
