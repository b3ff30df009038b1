"""Losses of Insta-DM: photometric and geometry consistency, smoothness, object size, motion-field consistency.

Images are the networks' normalised tensors (mean 0.5, std 0.5, range -1..1).  The losses work on
"directed pairs" stacked on the batch axis (:class:`pairs.PairLayout`): each row compares a view with
a source warped into it, so forward (reference -> target) and backward (target -> reference)
directions share one code path.  The depth metrics live in :mod:`kitti_eval.depth_metrics` (one
implementation for evaluation and validation) and are re-exported here.
"""
import torch
import torch.nn.functional as F

from inverse_warp import flow_warp, rotation_matrix
from kitti_eval.depth_metrics import compute_errors  # noqa: F401  (re-exported, as in the official code)

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
SSIM_WEIGHT = 0.85
MOF_ALPHA = 5.0
MOF_GEOMETRY_THRESHOLD = 0.1


def masked_mean(values, mask):
    """Mean of ``values`` ``[N,C,H,W]`` over pixels where ``mask`` ``[N,1,H,W]`` is 1 (0 when none are)."""
    mask = mask.expand_as(values)
    total = mask.sum()
    return (values * mask).sum() / total.clamp(min=1)


def ssim_loss(x, y):
    """``(1 - SSIM) / 2`` per pixel, clamped to [0, 1]: 3x3 average pools on reflection-padded images.

    Args:
        x, y: ``[B,C,H,W]`` images.
    Returns:
        ``[B,C,H,W]`` dissimilarity.
    """
    x, y = F.pad(x, (1, 1, 1, 1), mode='reflect'), F.pad(y, (1, 1, 1, 1), mode='reflect')
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return ((1 - numerator / denominator) / 2).clamp(0, 1)


def photometric_and_geometry_maps(view, source, warped, warp_valid, computed_depth, projected_depth,
                                  with_ssim=True, with_mask=True, with_auto_mask=True, obj_mask=None):
    """Per-pixel photometric and geometry errors of a source warped into a view.

    Args:
        view: ``[N,3,H,W]`` image the warp should reproduce.
        source: ``[N,3,H,W]`` source image before warping (for the auto-mask).
        warped: ``[N,3,H,W]`` source warped into the view.
        warp_valid: ``[N,1,H,W]`` pixels where the warp is valid.
        computed_depth, projected_depth: ``[N,1,H,W]`` depths from the second projection.
        obj_mask: ``[N,1,H,W]`` instance pixels, to restrict the losses to objects (``--with-only-obj``).
    Returns:
        ``(diff_img [N,3,H,W], diff_depth [N,1,H,W], loss_mask [N,1,H,W])``: ``loss_mask`` is ``warp_valid``
        times the auto-mask and the object restriction, the pixels the losses average over.
    """
    diff_img = (view - warped).abs().clamp(0, 1)
    diff_depth = ((computed_depth - projected_depth).abs() / (computed_depth + projected_depth)).clamp(0, 1)
    loss_mask = warp_valid
    if with_auto_mask:
        stationary = diff_img.mean(1, keepdim=True) < (view - source).abs().mean(1, keepdim=True)
        loss_mask = loss_mask * stationary.to(loss_mask.dtype)
    if obj_mask is not None:
        loss_mask = loss_mask * obj_mask
    if with_ssim:
        diff_img = (1 - SSIM_WEIGHT) * diff_img + SSIM_WEIGHT * ssim_loss(view, warped)
    if with_mask:
        diff_img = diff_img * (1 - diff_depth)
    return diff_img, diff_depth, loss_mask


def pairwise_masked_means(values, valid, num_pairs):
    """Masked mean of each directed pair: ``values`` ``[P*B,C,H,W]`` (``B`` rows per pair) -> ``[P]``."""
    values = values.reshape(num_pairs, -1, *values.shape[1:])
    valid = valid.reshape(num_pairs, -1, *valid.shape[1:]).expand_as(values)
    dims = tuple(range(1, values.dim()))
    return (values * valid).sum(dims) / valid.sum(dims).clamp(min=1)


def smooth_loss(maps, imgs):
    """Edge-aware first-order smoothness of mean-normalised maps, normalised as the official code.

    The official code differences each pixel with its left (upper) neighbour through ``torch.roll``, zeroes
    the first column (row) and averages over all ``W`` columns (``H`` rows): the sums of the ``W - 1``
    (``H - 1``) differences are divided by ``H * W``.

    Args:
        maps: ``[N,1,H,W]`` maps (depth in the official training, see README).
        imgs: ``[N,3,H,W]`` matching images.
    Returns:
        Scalar: mean x-gradient plus mean y-gradient, each weighted by ``exp(-|image gradient|)``.
    """
    norm = maps / (maps.mean(dim=(2, 3), keepdim=True) + 1e-7)
    grad_x = (norm[..., :, :-1] - norm[..., :, 1:]).abs()
    grad_y = (norm[..., :-1, :] - norm[..., 1:, :]).abs()
    img_grad_x = (imgs[..., :, :-1] - imgs[..., :, 1:]).abs().mean(1, keepdim=True)
    img_grad_y = (imgs[..., :-1, :] - imgs[..., 1:, :]).abs().mean(1, keepdim=True)
    num_pixels = norm.numel()
    return ((grad_x * torch.exp(-img_grad_x)).sum() + (grad_y * torch.exp(-img_grad_y)).sum()) / num_pixels


def expected_object_depths(masks, fy, height_prior):
    """The depth the object size constraint asks of each instance: ``fy * height_prior / h_k``, ``h_k`` the
    number of image rows instance ``k`` covers (at least 1).

    Args:
        masks: ``[N,M,H,W]`` binary instance masks; fy: ``[N]`` vertical focal lengths;
        height_prior: scalar (tensor or float), the object height.
    Returns:
        ``[N,M]`` expected depths.
    """
    rows = (masks.amax(dim=3) > 0).sum(dim=2).to(masks.dtype if masks.is_floating_point() else fy.dtype)
    return fy[:, None] * height_prior / rows.clamp(min=1)


def object_size_errors(depth, masks, fy, height_prior):
    """Object size constraint (struct2depth): an object's depth should fit its pixel height.

    For each instance ``k``: ``d_k`` = its mean depth, ``h_k`` = the number of image rows it covers,
    and the expected depth is ``fy * height_prior / h_k``.  The error is ``|d_k - fy * hp / h_k|``
    divided by the frame's mean depth (detached).

    Args:
        depth: ``[N,1,H,W]`` depth.
        masks: ``[N,M,H,W]`` binary instance masks (empty channels are ignored).
        fy: ``[N]`` vertical focal lengths.
        height_prior: scalar tensor, the learnable object height.
    Returns:
        ``(errors [N,M], exists [N,M] bool)``.
    """
    area = masks.sum(dim=(2, 3))
    mean_depth = (masks * depth).sum(dim=(2, 3)) / area.clamp(min=1)
    expected = expected_object_depths(masks, fy, height_prior)
    frame_depth = depth.detach().mean(dim=(1, 2, 3))[:, None]
    return (mean_depth - expected).abs() / frame_depth, area > 0


def object_size_loss(depth, masks, fy, height_prior, num_pairs=1):
    """Object size loss: mean error over the instances of each of ``num_pairs`` stacked frame sets, summed.

    Frame sets without an instance contribute 0.  Shapes as :func:`object_size_errors`.
    """
    errors, exists = object_size_errors(depth, masks, fy, height_prior)
    errors = (errors * exists).reshape(num_pairs, -1).sum(1)
    counts = exists.reshape(num_pairs, -1).sum(1)
    return (errors / counts.clamp(min=1)).sum()


def motion_field_cycle_errors(field, reverse_field, flow, rotation_mode='euler'):
    """Cycle consistency of a motion field and the reverse field (Depth from Videos in the Wild).

    Pixel ``p`` of the view moves to ``p + flow(p)`` in the source; going there with ``field``
    (view -> source) and back with ``reverse_field`` (source -> view, sampled at the new position)
    should be the identity.  The errors are taken in the official order: rotation ``R R' - I`` and
    translation ``R t' + t`` (``R, t`` of ``field``, ``R', t'`` of ``reverse_field``).  The flow only says
    where to sample ``reverse_field``: it is detached, as the official ``flow_warp(ref_mof,
    r2t_flow.detach())``, so the loss reaches depth and motion through the fields alone.

    Args:
        field: :class:`motion_field.MotionField` view -> source (``N`` rotations, ``[N,3,H,W]`` translations).
        reverse_field: the motion field source -> view, in the source's pixels.
        flow: ``[N,2,H,W]`` flow of the view's pixels into the source.
    Returns:
        ``(rotation_error [N], translation_error [N,1,H,W])``, each normalised by the motions' size.
    """
    translation = field.translation
    eye = torch.eye(3, dtype=translation.dtype, device=translation.device)
    rotation = rotation_matrix(field.rotation, rotation_mode)
    reverse_rotation = rotation_matrix(reverse_field.rotation, rotation_mode)
    rot_scale = ((rotation - eye) ** 2).mean(dim=(1, 2)) + ((reverse_rotation - eye) ** 2).mean(dim=(1, 2))
    rotation_error = ((rotation @ reverse_rotation - eye) ** 2).mean(dim=(1, 2)) / (1e-24 + rot_scale)

    n, h, w = field.shape
    reverse_translation, _ = flow_warp(reverse_field.translation, flow.detach())
    cycle_trans = (rotation @ reverse_translation.reshape(n, 3, -1)).reshape(n, 3, h, w) + translation
    trans_scale = (translation ** 2).sum(1, keepdim=True) + (reverse_translation ** 2).sum(1, keepdim=True)
    translation_error = (cycle_trans ** 2).sum(1, keepdim=True) / (1e-24 + trans_scale)
    return rotation_error, translation_error


def motion_field_consistency_loss(motion_field, flows, diff_depths, loss_mask, layout, alpha=MOF_ALPHA,
                                  threshold=MOF_GEOMETRY_THRESHOLD, rotation_mode='euler'):
    """Motion-field consistency of the forward directed pairs (reference -> target), as the official code.

    Args:
        motion_field: :class:`motion_field.MotionField` of the ``P*B`` directed pairs (view -> source).
        flows: ``[P*B,2,H,W]`` flows of the second projection (detached here).
        diff_depths, loss_mask: ``[P*B,1,H,W]`` geometry errors and the photometric loss mask.
        layout: the :class:`pairs.PairLayout` of the stacks (which rows are the forward pairs, which
            pair is the reverse of which).
    Returns:
        Scalar ``rotation + alpha * translation`` averaged over the references; each forward pair's
        field is checked against its reverse pair's field sampled at the forward flow, the translation
        error on ``loss_mask`` pixels whose geometry error is below ``threshold``.
    """
    forward = layout.forward_half
    rotation, translation = motion_field_cycle_errors(
        motion_field.apply(forward), motion_field.apply(layout.reverse).apply(forward), forward(flows), rotation_mode)
    consistent = forward(loss_mask) * (forward(diff_depths) < threshold).to(loss_mask.dtype)
    rotation = rotation.reshape(layout.num_refs, -1).mean(1)
    return (rotation + alpha * pairwise_masked_means(translation, consistent.detach(), layout.num_refs)).mean()
