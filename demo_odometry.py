"""Odometry maths of the unified visual odometry demo (``demo.py``): trajectory, object positions, track ids.

Conventions: camera frame x right, y down, z forward; a pose "from frame t to frame t+1" maps
camera-t points into camera t+1 (``X_{t+1} = R X_t + t``); the world frame is the camera of the
first frame; ``cam_to_world[t]`` maps camera-t points to the world.
"""
import numpy as np
import torch

from inverse_warp import pose_vec2mat
from kitti_eval.odometry_metrics import chain_poses


def pose_vectors_to_matrices(poses, rotation_mode='euler'):
    """``[F-1,6]`` pose vectors ``t -> t+1`` -> ``[F-1,4,4]`` float64 transforms (camera t -> camera t+1)."""
    poses = torch.as_tensor(np.asarray(poses, np.float64))
    transforms = np.tile(np.eye(4), (poses.shape[0], 1, 1))
    if poses.shape[0]:
        transforms[:, :3, :4] = pose_vec2mat(poses, rotation_mode).numpy()
    return transforms


def chain_trajectory(poses, rotation_mode='euler'):
    """Chain relative poses into camera-to-world transforms.

    Args:
        poses: ``[F-1,6]`` pose vectors of frame t -> t+1 (``X_{t+1} = R X_t + t``).
        rotation_mode: ``'euler'`` or ``'quat'``, as the pose network was trained (``pose_vec2mat``).
    Returns:
        ``[F,4,4]`` float64 ``cam_to_world``; frame 0 is the world frame and
        ``cam_to_world[t+1] = cam_to_world[t] @ inv(T_{t -> t+1})``.
    """
    return chain_poses(pose_vectors_to_matrices(poses, rotation_mode))


def to_world(cam_to_world, points):
    """``[4,4]`` transform applied to ``[...,3]`` camera points -> ``[...,3]`` world points."""
    return points @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


def object_centroids(points, masks):
    """Mean back-projected point of every instance.

    Args:
        points: ``[3,H,W]`` camera points of a frame.
        masks: ``[M,H,W]`` binary masks.
    Returns:
        ``[M,3]`` centroids in camera coordinates (NaN for an empty mask).
    """
    masks = np.asarray(masks, np.float64)
    areas = masks.sum(axis=(1, 2))
    sums = np.einsum('mhw,chw->mc', masks, np.asarray(points, np.float64))
    with np.errstate(invalid='ignore', divide='ignore'):
        return sums / areas[:, None]


def project_points(K, points):
    """``[N,3]`` camera points -> ``[N,2]`` pixel coordinates (z clamped at 1e-3)."""
    projected = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
    return projected[:, :2] / np.maximum(projected[:, 2:3], 1e-3)


def assign_track_ids(matches, num_frames):
    """Stable track ids from the associations of consecutive frames.

    Args:
        matches: ``F-1`` int arrays ``[k,2]``: stored instance channel in frame t, in frame t+1.
        num_frames: ``F``.
    Returns:
        list of ``F`` dicts ``{stored channel: track id}``; ids start at 1 and an instance keeps
        the id of the instance it is matched with in the previous frame.
    """
    ids = [{} for _ in range(num_frames)]
    next_id = 1
    for t, pairs in enumerate(matches):
        for channel_a, channel_b in np.asarray(pairs, np.int64).reshape(-1, 2):
            if channel_a not in ids[t]:
                ids[t][int(channel_a)] = next_id
                next_id += 1
            ids[t + 1][int(channel_b)] = ids[t][int(channel_a)]
    return ids
