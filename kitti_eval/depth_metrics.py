"""Depth metrics of the KITTI Eigen split: the one implementation used by evaluation and validation.

Per image: valid pixels are ``min_depth < gt < max_depth`` inside the Garg crop; the prediction is
scaled by ``median(gt) / median(pred)`` over those pixels (per image, unless median scaling is off
for metric-scale models), clamped to ``[min_depth, max_depth]``, and compared with the GT.
Dataset numbers are the mean of the per-image numbers.

``compute_errors`` takes NumPy arrays or torch tensors (any device) of the same ``[H,W]`` size
(``[1,H,W]`` / ``[1,1,H,W]`` are accepted too) and returns plain floats.
"""
from typing import NamedTuple

import numpy as np
import torch

METRIC_NAMES = ('abs_diff', 'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3')
TABLE_METRICS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3')
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # top, bottom, left, right (fractions)
CROPS = ('garg', None)
DELTA = 1.25


class DepthErrors(NamedTuple):
    """Errors of one image (or their mean over images)."""

    abs_diff: float
    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    a1: float
    a2: float
    a3: float


class NoValidPixelsError(ValueError):
    """An image has no ground-truth pixel inside the depth range and the crop."""


def as_depth_map(name, depth):
    """``depth`` (NumPy or torch, ``[H,W]``, ``[1,H,W]`` or ``[1,1,H,W]``) as a ``[H,W]`` tensor."""
    depth = torch.as_tensor(depth)
    while depth.dim() > 2 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.dim() != 2:
        raise ValueError(f"{name} must be one depth map [H,W], got shape {list(depth.shape)}")
    return depth


def crop_mask(shape, crop='garg', device=None):
    """Boolean ``[H,W]`` mask of the evaluation crop (all True for ``crop=None``).

    Garg crop: rows ``int(0.40810811 H) .. int(0.99189189 H)``, columns
    ``int(0.03594771 W) .. int(0.96405229 W)`` (end excluded), as in the official evaluation.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    height, width = shape
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        mask[:] = True
        return mask
    top, bottom = int(GARG_CROP[0] * height), int(GARG_CROP[1] * height)
    left, right = int(GARG_CROP[2] * width), int(GARG_CROP[3] * width)
    mask[top:bottom, left:right] = True
    return mask


def evaluation_mask(gt, min_depth=1e-3, max_depth=80, crop='garg'):
    """Pixels that are evaluated: ``min_depth < gt < max_depth`` inside the crop, ``[H,W]`` bool."""
    gt = as_depth_map('gt', gt)
    return (gt > min_depth) & (gt < max_depth) & crop_mask(gt.shape, crop, gt.device)


def median(values):
    """Median of a 1-D tensor, the mean of the two middle values for an even count (as ``np.median``)."""
    count = values.numel()
    lower = values.kthvalue((count + 1) // 2).values
    upper = values.kthvalue(count // 2 + 1).values if count % 2 == 0 else lower
    return (lower + upper) / 2


def errors_between(gt, pred):
    """Metrics between matching 1-D tensors of GT and (scaled, clamped) predicted depths."""
    gt, pred = gt.double(), pred.double()
    diff = gt - pred
    ratio = torch.maximum(gt / pred, pred / gt)
    values = (diff.abs().mean(),
              (diff.abs() / gt).mean(),
              (diff ** 2 / gt).mean(),
              (diff ** 2).mean().sqrt(),
              ((gt.log() - pred.log()) ** 2).mean().sqrt(),
              (ratio < DELTA).double().mean(),
              (ratio < DELTA ** 2).double().mean(),
              (ratio < DELTA ** 3).double().mean())
    return DepthErrors(*torch.stack(values).tolist())


def compute_errors(gt, pred, min_depth=1e-3, max_depth=80, crop='garg', median_scaling=True,
                   mask=None, scale=None):
    """Depth errors of one image.

    Args:
        gt: ground-truth depth ``[H,W]`` (0 where unknown), NumPy or torch.
        pred: predicted depth ``[H,W]``, same size as ``gt``.
        min_depth, max_depth: GT range that is evaluated (exclusive) and the clamp of the prediction.
        crop: ``'garg'`` or ``None``.
        median_scaling: scale ``pred`` by ``median(gt) / median(pred)`` over the valid pixels.
        mask: optional ``[H,W]`` bool; only these pixels are evaluated (e.g. foreground).
        scale: use this scale instead of computing it (the foreground/background split uses the
            scale of all pixels); overrides ``median_scaling``.

    Returns:
        DepthErrors (abs_diff, abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3) as floats.

    Raises:
        NoValidPixelsError: no pixel to evaluate.
    """
    return compute_errors_and_scale(gt, pred, min_depth, max_depth, crop, median_scaling, mask, scale)[0]


def compute_errors_and_scale(gt, pred, min_depth=1e-3, max_depth=80, crop='garg', median_scaling=True,
                             mask=None, scale=None):
    """:func:`compute_errors` and the scale applied to the prediction (a float; 1.0 without scaling)."""
    gt, pred = as_depth_map('gt', gt), as_depth_map('pred', pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same size, got {list(gt.shape)} and {list(pred.shape)}")
    valid = evaluation_mask(gt, min_depth, max_depth, crop)
    if mask is not None:
        valid &= as_depth_map('mask', mask).to(device=valid.device, dtype=torch.bool)
    gt_valid, pred_valid = gt[valid].double(), pred[valid].double()
    if gt_valid.numel() == 0:
        raise NoValidPixelsError(f"no ground-truth pixel in ({min_depth}, {max_depth}) inside the "
                                 f"{crop or 'full'} crop")
    if scale is None:
        scale = float(median(gt_valid) / median(pred_valid)) if median_scaling else 1.0
    return errors_between(gt_valid, (pred_valid * scale).clamp(min_depth, max_depth)), float(scale)


def compute_errors_split(gt, pred, fg_mask, **kwargs):
    """Errors on all, foreground and background pixels of one image.

    The median scale is taken over all valid pixels and reused for the two parts (as the official
    validation).  Returns ``{'all': DepthErrors, 'fg': DepthErrors | None, 'bg': DepthErrors | None}``;
    a part with no valid pixel is ``None`` (all three when the image has none).  ``kwargs`` go to
    :func:`compute_errors`.
    """
    fg_mask = as_depth_map('fg_mask', fg_mask).to(dtype=torch.bool)
    try:
        all_errors, scale = compute_errors_and_scale(gt, pred, **kwargs)
    except NoValidPixelsError:
        return {'all': None, 'fg': None, 'bg': None}
    kwargs['scale'] = scale
    results = {'all': all_errors}
    for part, part_mask in (('fg', fg_mask), ('bg', ~fg_mask)):
        try:
            results[part] = compute_errors(gt, pred, mask=part_mask, **kwargs)
        except NoValidPixelsError:
            results[part] = None
    return results


def compute_errors_batch(gt, pred, **kwargs):
    """Per-image errors of a batch: ``gt``, ``pred`` ``[B,H,W]`` or ``[B,1,H,W]``; list of DepthErrors."""
    if len(gt) != len(pred):
        raise ValueError(f"gt and pred batches differ in size: {len(gt)} and {len(pred)}")
    return [compute_errors(g, p, **kwargs) for g, p in zip(gt, pred)]


def average_errors(errors):
    """Mean over images of a sequence of DepthErrors (``None`` entries are skipped)."""
    errors = [e for e in errors if e is not None]
    if not errors:
        raise ValueError("no per-image errors to average")
    return DepthErrors(*np.mean(np.array(errors, dtype=np.float64), axis=0).tolist())


def format_table(errors, names=TABLE_METRICS):
    """Two-line table (header, values) of the paper's metrics, 4 decimals."""
    header = ', '.join(f"{name:>10}" for name in names)
    values = ', '.join(f"{getattr(errors, name):10.4f}" for name in names)
    return header + '\n' + values
