"""Ego-motion and object-motion errors against the synthetic world's ground truth.

Conventions: a pose ``a -> b`` maps points of camera ``a`` into camera ``b`` (``X_b = R X_a + t``), as
EgoPoseNet's output and ``data.synthetic.relative_pose``.  The networks' translations are in the depth
scale of DispResNet; they are brought to metres with the frame's median scale
``median(gt depth) / median(predicted depth)`` (the depth evaluation's scale), except the snippet ATE,
which fits one least-squares scale per snippet (the SfMLearner / SC-SfMLearner protocol).
"""
import numpy as np

from demo_odometry import pose_vectors_to_matrices
from kitti_eval.odometry_metrics import chain_poses, rotation_angle, snippet_ate

DIRECTION_TOLERANCE_DEG = 30.0


def relative_gt_poses(cam_to_world):
    """``[F,4,4]`` camera-to-world -> ``[F-1,4,4]`` GT poses ``t -> t+1``."""
    return np.stack([np.linalg.inv(cam_to_world[t + 1]) @ cam_to_world[t] for t in range(len(cam_to_world) - 1)])


def ego_records(pred_poses, cam_to_world, scales, rotation_mode='euler'):
    """The ego-motion record of one scene.

    Args:
        pred_poses: ``[F-1,6]`` EgoPoseNet poses ``t -> t+1``.
        cam_to_world: ``[F,4,4]`` GT camera poses.
        scales: ``F`` median scales of the frames' depth (None where the frame has no valid GT).
    Returns:
        dict ``pred`` ``[F-1,4,4]``, ``gt`` ``[F-1,4,4]``, ``scales`` list.
    """
    return {'pred': pose_vectors_to_matrices(pred_poses, rotation_mode), 'gt': relative_gt_poses(cam_to_world),
            'scales': list(scales)}


def _mean(values):
    return float(np.mean(values)) if len(values) else None


def summarise_ego(records, snippet_length=3):
    """``{'ate', 'ate_std', 'rel_trans', 'rot_deg', 'snippets', 'pairs', 'snippet_length'}`` over scenes."""
    ates, rel_trans, rot = [], [], []
    for record in records:
        pred, gt = record['pred'], record['gt']
        if len(gt) + 1 >= snippet_length:
            ates.extend(snippet_ate(chain_poses(gt), chain_poses(pred), snippet_length).tolist())
        rot.extend(np.degrees(rotation_angle(gt[:, :3, :3] @ pred[:, :3, :3].transpose(0, 2, 1))).tolist())
        for t in range(len(gt)):
            gt_norm = np.linalg.norm(gt[t, :3, 3])
            if record['scales'][t] is not None and gt_norm > 0:
                rel_trans.append(float(np.linalg.norm(record['scales'][t] * pred[t, :3, 3] - gt[t, :3, 3]) / gt_norm))
    return {'ate': _mean(ates), 'ate_std': float(np.std(ates)) if ates else None, 'rel_trans': _mean(rel_trans),
            'rot_deg': _mean(rot), 'snippets': len(ates), 'pairs': len(rot), 'snippet_length': snippet_length}


def gt_object_translation(truth, car, frame_a, frame_b):
    """``[3]`` translation car ``car`` (0-based) adds to the ego motion ``a -> b``, in camera ``b``."""
    move = truth['objects'][car]['position'][frame_b] - truth['objects'][car]['position'][frame_a]
    return truth['cam_to_world'][frame_b, :3, :3].T @ move


def object_records(matches, obj_motion, truth, scales):
    """Predicted and GT translation of every car visible in two consecutive frames.

    Args:
        matches: ``F-1`` int arrays ``[k,2]``: stored mask channel in frame t and t+1 of each match.
        obj_motion: ``F-1`` arrays ``[k,3]``: ObjPoseNet translation ``t -> t+1`` of each match.
        truth: the scene's ground truth (``experiments.eval_synthetic.read_scene_truth``).
        scales: ``F`` median depth scales (None: the pair is skipped).
    Returns:
        list of dicts ``kind``, ``gt`` ``[3]`` metres, ``pred`` ``[3]`` metres (the translation the motion field
        gives the car's pixels in frame t: zero when its channel was not matched), ``matched`` bool (ObjPoseNet
        gave it a translation), ``wrong_partner`` bool (matched, but to a channel of frame t+1 that is not the
        same car's).
    """
    records = []
    for t, (pairs, motion) in enumerate(zip(matches, obj_motion)):
        if scales[t] is None:
            continue
        pairs = np.asarray(pairs).reshape(-1, 2)
        row_of_channel = {int(channel): row for row, channel in enumerate(pairs[:, 0])}
        for car, obj in enumerate(truth['objects']):
            if obj['mask_index'][t] < 1 or obj['mask_index'][t + 1] < 1:
                continue
            row = row_of_channel.get(obj['mask_index'][t])
            matched = row is not None
            pred = scales[t] * np.asarray(motion[row], float) if matched else np.zeros(3)
            records.append({'kind': obj['kind'], 'gt': gt_object_translation(truth, car, t, t + 1), 'pred': pred,
                            'matched': matched,
                            'wrong_partner': matched and bool(pairs[row, 1] != obj['mask_index'][t + 1])})
    return records


def direction_error_deg(gt, pred):
    """Angle between two ``[3]`` vectors in degrees (180 when either is zero)."""
    norms = np.linalg.norm(gt) * np.linalg.norm(pred)
    if norms == 0:
        return 180.0
    return float(np.degrees(np.arccos(np.clip(np.dot(gt, pred) / norms, -1.0, 1.0))))


def summarise_object_group(records, moving, tolerance_deg=DIRECTION_TOLERANCE_DEG):
    """``{epe, rel, within_30deg, cars, matched, wrong_partner}`` of one group of :func:`object_records`.

    ``epe`` is the mean end-point error in metres over all the group's cars; for a ``moving`` group ``rel`` is the
    mean of ``epe / |gt|`` and ``within_30deg`` the share of cars whose estimated direction is within
    ``tolerance_deg``, both over the cars that did move between the two frames (both null for parked cars, whose
    true motion is zero); ``matched`` and ``wrong_partner`` count the records' flags.
    """
    epe = [float(np.linalg.norm(r['pred'] - r['gt'])) for r in records]
    moved = [(e, r) for e, r in zip(epe, records) if moving and np.linalg.norm(r['gt']) > 0]
    rel = [e / np.linalg.norm(r['gt']) for e, r in moved]
    within = [direction_error_deg(r['gt'], r['pred']) < tolerance_deg for _, r in moved]
    return {'epe': _mean(epe), 'rel': _mean(rel), 'within_30deg': _mean(within) if moving else None,
            'cars': len(records), 'matched': sum(r['matched'] for r in records),
            'wrong_partner': sum(r['wrong_partner'] for r in records)}


def summarise_objects(records, tolerance_deg=DIRECTION_TOLERANCE_DEG):
    """``{'moving': {epe, rel, within_30deg, cars, matched, wrong_partner}, 'parked': {epe, rel (null), cars,
    matched, wrong_partner}}``
    (:func:`summarise_object_group` of the moving and of the parked cars)."""
    return {group: summarise_object_group([r for r in records if (r['kind'] == 'parked') == (group == 'parked')],
                                          group == 'moving', tolerance_deg)
            for group in ('moving', 'parked')}
