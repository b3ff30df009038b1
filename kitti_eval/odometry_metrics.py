"""Ego-motion metrics: trajectory alignment, KITTI devkit segment errors, ATE, RPE, snippet ATE.

Poses are ``[F,4,4]`` float64 camera-to-world transforms (``X_world = R X_cam + t``), as the rows
of a KITTI odometry pose file.  NumPy only, so that evaluating a sequence takes milliseconds.

* Alignment of a prediction to the ground truth (``align_trajectory``): ``none``; ``scale``, one
  factor ``s`` minimising ``sum |t_gt - s t_pred|^2`` over all positions; ``6dof`` / ``7dof``, the
  Umeyama rigid / similarity transform of the positions.  Orientations are rotated with the positions.
* ``segment_errors``: the KITTI odometry devkit (``evaluate_odometry.cpp``): segments of 100, 200,
  ..., 800 m of travelled GT distance, every 10th frame as first frame, the last frame the first one
  whose travelled distance exceeds the first's plus the length; error pose ``inv(pred delta) @ GT
  delta``; its rotation angle and translation norm divided by the length, averaged over all
  segments: ``t_err`` in %, ``r_err`` in deg / 100 m.
* ``absolute_trajectory_error``: RMSE of the positions (m); ``relative_pose_errors``: mean
  frame-to-frame translation (m) and rotation (deg) error.
* ``snippet_ate``: the SfMLearner / Monodepth2 protocol: every snippet of ``n`` consecutive frames,
  positions relative to its first frame, one least-squares scale per snippet, error
  ``sqrt(sum |s p - g|^2) / n`` (the formula of their code, which the published numbers use).
"""
from dataclasses import dataclass

import numpy as np

ALIGNMENTS = ('none', 'scale', '6dof', '7dof')
SEGMENT_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)
SEGMENT_STEP = 10
METRIC_NAMES = ('t_err', 'r_err', 'ate', 'rpe_trans', 'rpe_rot')


class AlignmentError(ValueError):
    """A trajectory that cannot be aligned (one-line message)."""


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` (``rotation`` ``[3,3]``, ``translation`` ``[3]``)."""
    scale: float
    rotation: np.ndarray
    translation: np.ndarray


@dataclass(frozen=True)
class OdometryErrors:
    """The five numbers of ``odometry_metrics.json``; ``t_err``/``r_err`` are None without a full segment."""
    t_err: float | None
    r_err: float | None
    ate: float
    rpe_trans: float
    rpe_rot: float

    def as_dict(self):
        return {name: getattr(self, name) for name in METRIC_NAMES}


def rotation_angle(rotations):
    """Angle (rad) of ``[...,3,3]`` rotations.

    The devkit's ``acos((trace - 1) / 2)``, computed as ``atan2(sin, cos)`` with the sine from the
    skew-symmetric part: the same angle, but accurate near zero, where ``acos`` turns a rounding
    error of 1e-9 in the trace into an angle of 4e-5 rad.
    """
    cosine = 0.5 * (np.trace(rotations, axis1=-2, axis2=-1) - 1.0)
    skew = np.stack([rotations[..., 2, 1] - rotations[..., 1, 2], rotations[..., 0, 2] - rotations[..., 2, 0],
                     rotations[..., 1, 0] - rotations[..., 0, 1]], -1)
    return np.arctan2(0.5 * np.linalg.norm(skew, axis=-1), cosine)


def relative_transforms(poses, first, last):
    """``inv(poses[first]) @ poses[last]`` for index arrays ``first``, ``last``: ``[N,4,4]``."""
    return np.linalg.inv(poses[first]) @ poses[last]


def chain_poses(transforms):
    """Camera-to-world poses ``[F,4,4]`` from frame-to-frame transforms ``[F-1,4,4]``.

    ``transforms[t]`` maps camera-t points into camera t+1 (``X_{t+1} = T X_t``); frame 0 is the
    world frame and ``cam_to_world[t+1] = cam_to_world[t] @ inv(transforms[t])``.
    """
    cam_to_world = [np.eye(4)]
    for transform in np.linalg.inv(np.asarray(transforms, np.float64)):
        cam_to_world.append(cam_to_world[-1] @ transform)
    return np.stack(cam_to_world)


def umeyama(source, target, with_scale):
    """Least-squares similarity (or rigid) transform taking ``source`` ``[N,3]`` points onto ``target``.

    Umeyama (1991): minimises ``sum |target - (s R source + t)|^2`` over rotations ``R`` (no
    reflection), translations ``t`` and, with ``with_scale``, scales ``s`` (else ``s = 1``).
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_source, mean_target = source.mean(0), target.mean(0)
    centred_source, centred_target = source - mean_source, target - mean_target
    variance = (centred_source ** 2).sum() / len(source)
    if variance <= 1e-18:
        raise AlignmentError("the predicted positions are all the same point: the trajectory cannot be aligned")
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if with_scale else 1.0
    return Similarity(scale, rotation, mean_target - scale * rotation @ mean_source)


def least_squares_scale(source, target):
    """``s`` minimising ``sum |target - s source|^2`` (``[N,3]`` each); 0 when ``source`` is all zero."""
    denominator = float((source ** 2).sum())
    return float((source * target).sum()) / denominator if denominator > 0 else 0.0


def fit_alignment(gt, pred, mode='7dof'):
    """The :class:`Similarity` that aligns the ``[F,4,4]`` prediction ``pred`` to ``gt`` by ``mode``."""
    if mode not in ALIGNMENTS:
        raise ValueError(f"--align {mode!r}: expected one of {', '.join(ALIGNMENTS)}")
    if mode == 'none':
        return Similarity(1.0, np.eye(3), np.zeros(3))
    if mode == 'scale':
        scale = least_squares_scale(pred[:, :3, 3], gt[:, :3, 3])
        if scale == 0.0:
            raise AlignmentError("the predicted positions are all zero: the trajectory cannot be scale-aligned")
        return Similarity(scale, np.eye(3), np.zeros(3))
    return umeyama(pred[:, :3, 3], gt[:, :3, 3], with_scale=mode == '7dof')


def apply_similarity(poses, similarity):
    """``[F,4,4]`` poses moved by a similarity: positions ``s R t + t0``, orientations ``R R_pose``."""
    aligned = np.array(poses, np.float64)
    aligned[:, :3, :3] = similarity.rotation @ aligned[:, :3, :3]
    aligned[:, :3, 3] = similarity.scale * aligned[:, :3, 3] @ similarity.rotation.T + similarity.translation
    return aligned


def align_trajectory(gt, pred, mode='7dof'):
    """``(aligned prediction [F,4,4], Similarity)``: ``pred`` aligned to ``gt`` by ``mode`` (see module doc)."""
    similarity = fit_alignment(gt, pred, mode)
    return apply_similarity(pred, similarity), similarity


def trajectory_distances(poses):
    """``[F]`` travelled distance (m) at every frame: cumulative sum of the position steps, 0 at frame 0."""
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def segment_errors(gt, pred, lengths=SEGMENT_LENGTHS, step=SEGMENT_STEP):
    """Per-segment errors of the KITTI odometry devkit.

    Returns:
        ``[S,3]`` rows ``(length m, translation error per metre, rotation error rad per metre)``,
        one per segment (first frames ``0, step, 2 step, ...``; every length whose end the GT reaches).
    """
    distances = trajectory_distances(gt)
    firsts = np.arange(0, len(gt), step)
    rows = []
    for length in lengths:
        lasts = np.searchsorted(distances, distances[firsts] + length, side='right')
        inside = lasts < len(gt)
        if not inside.any():
            continue
        first, last = firsts[inside], lasts[inside]
        error = np.linalg.inv(relative_transforms(pred, first, last)) @ relative_transforms(gt, first, last)
        rows.append(np.column_stack([np.full(len(first), float(length)),
                                     np.linalg.norm(error[:, :3, 3], axis=1) / length,
                                     rotation_angle(error[:, :3, :3]) / length]))
    return np.concatenate(rows) if rows else np.zeros((0, 3))


def kitti_segment_metrics(gt, pred, lengths=SEGMENT_LENGTHS, step=SEGMENT_STEP):
    """``(t_err %, r_err deg/100 m)`` averaged over all devkit segments, or ``(None, None)`` without one."""
    errors = segment_errors(gt, pred, lengths, step)
    if not len(errors):
        return None, None
    return float(errors[:, 1].mean() * 100), float(np.degrees(errors[:, 2].mean()) * 100)


def absolute_trajectory_error(gt, pred):
    """RMSE (m) of the positions of ``[F,4,4]`` poses (align the prediction first)."""
    return float(np.sqrt((np.linalg.norm(gt[:, :3, 3] - pred[:, :3, 3], axis=1) ** 2).mean()))


def relative_pose_errors(gt, pred):
    """Mean frame-to-frame relative pose error: ``(translation m, rotation deg)``.

    For every frame pair ``(k, k+1)``: ``E = inv(pred delta) @ GT delta``; the mean of ``|t_E|``
    and of the rotation angle of ``E``.  Needs at least two frames.
    """
    first = np.arange(len(gt) - 1)
    error = np.linalg.inv(relative_transforms(pred, first, first + 1)) @ relative_transforms(gt, first, first + 1)
    return (float(np.linalg.norm(error[:, :3, 3], axis=1).mean()),
            float(np.degrees(rotation_angle(error[:, :3, :3])).mean()))


def odometry_errors(gt, aligned_pred, lengths=SEGMENT_LENGTHS, step=SEGMENT_STEP):
    """All five metrics of an already aligned ``[F,4,4]`` prediction: :class:`OdometryErrors`."""
    t_err, r_err = kitti_segment_metrics(gt, aligned_pred, lengths, step)
    return OdometryErrors(t_err, r_err, absolute_trajectory_error(gt, aligned_pred),
                          *relative_pose_errors(gt, aligned_pred))


def snippet_ate(gt, pred, snippet_length):
    """ATE of every snippet of ``snippet_length`` consecutive frames (SfMLearner / Monodepth2).

    Positions of each snippet are taken relative to its first frame (``inv(P_i) @ P_{i+j}``), the
    prediction is scaled by its least-squares factor and the error is ``sqrt(sum |s p - g|^2) / n``.

    Returns:
        ``[F - n + 1]`` errors (m), one per snippet start frame.
    """
    if snippet_length < 2 or snippet_length > len(gt):
        raise ValueError(f"snippet length {snippet_length}: must be between 2 and the {len(gt)} frames")
    starts = np.arange(len(gt) - snippet_length + 1)
    offsets = np.arange(snippet_length)
    errors = np.empty(len(starts))
    for index, start in enumerate(starts):
        frames = start + offsets
        gt_xyz = relative_transforms(gt, np.full(snippet_length, start), frames)[:, :3, 3]
        pred_xyz = relative_transforms(pred, np.full(snippet_length, start), frames)[:, :3, 3]
        scale = least_squares_scale(pred_xyz, gt_xyz)
        errors[index] = np.sqrt(((scale * pred_xyz - gt_xyz) ** 2).sum()) / snippet_length
    return errors
