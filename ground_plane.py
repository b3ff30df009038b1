"""Metric depth from the camera height: fit the road plane to predicted depth and rescale.

A monocular network predicts depth up to an unknown scale.  A car-mounted camera sits at a known
height above the road (KITTI: 1.65 m, the synthetic world too), so the scale follows from the
road: back-project the lower, central part of the predicted depth map (where the road is), fit a
plane to it robustly (RANSAC over 3-pixel hypotheses whose normal is within ``max_tilt_deg`` of the
camera's vertical, then least-squares refinement on the inliers, both in disparity, where a plane is
linear in the pixel's ray), and take the distance of the camera centre from that plane: the camera
height in network units.  The metric scale is
``camera_height / estimated_height``.

Conventions: camera frame x right, y down, z forward; a plane is ``n . X = h`` with the unit normal
``n`` pointing down (``n_y > 0``), so ``h > 0`` is the camera's height above it.

    fit = fit_ground_plane(road_points(depth, K))            # GroundPlane(normal, height, inlier_fraction)
    scale = camera_height_scale(depth, K, camera_height=1.65)  # NaN when no plane is found
    scales = sequence_scales(per_image_scales, groups)         # one median scale per sequence
"""
from typing import NamedTuple

import numpy as np
import torch

from inverse_warp import pixel2cam

DEFAULT_CAMERA_HEIGHT = 1.65  # metres: KITTI's camera above the road (the synthetic world's too)
ROAD_REGION = (0.6, 1.0, 0.2, 0.8)  # top, bottom, left, right of the searched region (image fractions)
MAX_TILT_DEG = 15.0
INLIER_THRESHOLD = 0.05  # relative depth error of an inlier with respect to the plane
RANSAC_ITERATIONS = 300
MAX_RANSAC_POINTS = 4000
MIN_POINTS = 50
MIN_INLIER_FRACTION = 0.2
REFINEMENT_STEPS = 3
SCALE_MODES = ('image', 'sequence')


class GroundPlane(NamedTuple):
    """A fitted road plane ``normal . X = height`` in camera coordinates."""

    normal: np.ndarray      # [3] unit, pointing down (normal[1] > 0)
    height: float           # camera height above the plane, in the depth map's units
    inlier_fraction: float  # fraction of the region's points within the inlier threshold


def backproject(depth, K):
    """Camera points of every pixel: ``[H,W]`` depth and ``[3,3]`` intrinsics -> ``[H,W,3]`` float64."""
    K_inv = torch.from_numpy(np.linalg.inv(np.asarray(K, np.float64))).unsqueeze(0)
    points = pixel2cam(torch.from_numpy(np.asarray(depth, np.float64))[None, None], K_inv)
    return points[0].permute(1, 2, 0).numpy()


def region_mask(shape, region=ROAD_REGION):
    """``[H,W]`` bool mask of ``region = (top, bottom, left, right)`` given as image fractions."""
    height, width = shape
    top, bottom, left, right = region
    mask = np.zeros(shape, bool)
    mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    return mask


def road_points(depth, K, region=ROAD_REGION, exclude=None):
    """Back-projected points of the road region with finite, positive depth: ``[N,3]`` float64.

    Args:
        depth: ``[H,W]`` depth (any scale); K: ``[3,3]`` intrinsics of that resolution.
        region: (top, bottom, left, right) image fractions searched for the road.
        exclude: optional ``[H,W]`` bool, pixels to leave out (e.g. instance masks).
    """
    depth = np.asarray(depth, np.float64)
    keep = region_mask(depth.shape, region) & np.isfinite(depth) & (depth > 0)
    if exclude is not None:
        keep &= ~np.asarray(exclude, bool)
    return backproject(np.where(keep, depth, 1.0), K)[keep]


def plane_hypotheses(rays, disparity, rng, iterations, max_tilt_deg):
    """Planes through random pixel triples whose normal is near the vertical.

    A plane ``n . X = h`` seen along rays ``r = (x, y, 1)`` has the disparity ``1 / d = w . r`` with
    ``w = n / h``: three pixels give ``w`` by a 3x3 solve.

    Returns:
        ``[I,3]`` plane vectors ``w`` of the acceptable hypotheses (``I <= iterations``).
    """
    picks = rng.integers(0, len(rays), (iterations, 3))
    systems = rays[picks]
    ok = np.abs(np.linalg.det(systems)) > 1e-12
    planes = np.linalg.solve(systems[ok], disparity[picks[ok]][..., None])[..., 0]
    lengths = np.linalg.norm(planes, axis=1)
    upright = planes[:, 1] >= np.cos(np.radians(max_tilt_deg)) * lengths
    return planes[upright]


def refine_plane(rays, disparity, plane):
    """Least-squares plane vector ``w`` on the inliers, residuals relative to the current plane's disparity."""
    weights = 1.0 / np.maximum(rays @ plane, 1e-12)
    return np.linalg.lstsq(rays * weights[:, None], disparity * weights, rcond=None)[0]


def fit_ground_plane(points, max_tilt_deg=MAX_TILT_DEG, inlier_threshold=INLIER_THRESHOLD,
                     iterations=RANSAC_ITERATIONS, seed=0):
    """Robust road plane through ``[N,3]`` camera points (RANSAC, then least squares on the inliers).

    The plane is fitted in disparity, where it is linear in the pixel's ray and where the errors of a
    depth network live: a point is an inlier when the plane predicts its depth within
    ``inlier_threshold`` (relative), so the fit does not depend on the depth map's scale, and depth
    errors (which move points along their rays) do not tilt the plane as a point-to-plane fit would.

    Returns:
        :class:`GroundPlane`, or ``None`` when there are fewer than ``MIN_POINTS`` points in front of
        the camera, no hypothesis is within ``max_tilt_deg`` of the vertical, or the best plane holds
        fewer than ``MIN_INLIER_FRACTION`` of the points.
    """
    points = np.asarray(points, np.float64)
    points = points[points[:, 2] > 0]
    if len(points) < MIN_POINTS:
        return None
    rays, disparity = points / points[:, 2:3], 1.0 / points[:, 2]
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(points), min(len(points), MAX_RANSAC_POINTS), replace=False)
    planes = plane_hypotheses(rays[sample], disparity[sample], rng, iterations, max_tilt_deg)
    if len(planes) == 0:
        return None

    def inliers_of(plane):
        return np.abs((rays @ plane) / disparity - 1) < inlier_threshold

    support = (np.abs((rays[sample] @ planes.T) / disparity[sample, None] - 1) < inlier_threshold).sum(0)
    plane = planes[support.argmax()]
    for _ in range(REFINEMENT_STEPS):
        inliers = inliers_of(plane)
        if inliers.sum() < 3:
            return None
        plane = refine_plane(rays[inliers], disparity[inliers], plane)
    length = np.linalg.norm(plane)
    inlier_fraction = float(inliers_of(plane).mean())
    if plane[1] < np.cos(np.radians(max_tilt_deg)) * length or inlier_fraction < MIN_INLIER_FRACTION:
        return None
    return GroundPlane(plane / length, float(1.0 / length), inlier_fraction)


def camera_height_scale(depth, K, camera_height=DEFAULT_CAMERA_HEIGHT, region=ROAD_REGION, exclude=None, **fit):
    """Scale that makes ``depth`` metric: ``camera_height / fitted height``; NaN when no plane is found.

    Args:
        depth: ``[H,W]`` predicted depth; K: ``[3,3]`` intrinsics of that resolution.
        camera_height: the camera's height above the road in metres.
        region, exclude: see :func:`road_points`; ``fit``: options of :func:`fit_ground_plane`.
    """
    plane = fit_ground_plane(road_points(depth, K, region, exclude), **fit)
    return float('nan') if plane is None else camera_height / plane.height


def sequence_scales(scales, groups):
    """One scale per sequence: the median of the finite per-image ``scales`` of each group.

    Args:
        scales: ``[N]`` per-image scales (NaN where the fit failed).
        groups: ``N`` hashable sequence keys (e.g. the drive folder of each frame).
    Returns:
        ``[N]`` float64: every image gets its sequence's median (NaN if no image of it has a scale).
    """
    scales = np.asarray(scales, np.float64)
    groups = list(groups)
    result = np.full(len(scales), np.nan)
    for group in dict.fromkeys(groups):
        members = np.array([g == group for g in groups])
        finite = scales[members][np.isfinite(scales[members])]
        if finite.size:
            result[members] = np.median(finite)
    return result


def metric_scales(depths, intrinsics, groups, camera_height=DEFAULT_CAMERA_HEIGHT, mode='sequence'):
    """Camera-height scales of a set of depth maps, per image or per sequence.

    Args:
        depths: ``[N,H,W]`` predicted depths; intrinsics: ``[N,3,3]`` (or one ``[3,3]``) at that resolution.
        groups: ``N`` sequence keys; mode: ``'image'`` (a failed fit falls back to its sequence's
            median) or ``'sequence'`` (one median scale per sequence).
    Returns:
        ``(scales [N], per-image scales [N] with NaN for failed fits)``.
    Raises:
        ValueError: unknown ``mode``, or no plane found in any image of a sequence.
    """
    if mode not in SCALE_MODES:
        raise ValueError(f"scale mode must be one of {SCALE_MODES}, got {mode!r}")
    intrinsics = np.broadcast_to(np.asarray(intrinsics, np.float64), (len(depths), 3, 3))
    per_image = np.array([camera_height_scale(d, k, camera_height) for d, k in zip(depths, intrinsics)])
    per_sequence = sequence_scales(per_image, groups)
    if not np.isfinite(per_sequence).all():
        failed = next(g for g, s in zip(groups, per_sequence) if not np.isfinite(s))
        raise ValueError(f"{failed}: no ground plane found in any frame (is the road visible in the lower image "
                         f"region? --scale-from camera-height needs it)")
    scales = per_sequence if mode == 'sequence' else np.where(np.isfinite(per_image), per_image, per_sequence)
    return scales, per_image


def describe_scales(scales, per_image):
    """One line: how the camera-height scales came out (for the printed and saved reports)."""
    failed = int((~np.isfinite(per_image)).sum())
    finite = per_image[np.isfinite(per_image)]
    spread = np.std(finite / np.median(finite)) if finite.size else float('nan')
    return (f"camera-height scales: median {np.median(scales):.3f}, per-image std/median {spread:.3f}, "
            f"{failed} of {len(per_image)} images without a plane fit")
