"""Ground truth of the synthetic world: relative poses, pose vectors, object motion, motion fields, lidar scans
and the camera / lidar calibration."""
import numpy as np
import torch

from data.synthetic_render import cast_rays, lidar_reflectance
from inverse_warp import mat2euler


CAM2_FROM_CAM0 = np.array([0.06, 0.0, 0.0])
VELO_TO_CAM0_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
VELO_TO_CAM0_T = np.array([0.0, -0.08, -0.27])
CAM_BASELINES = (0.0, -0.54, 0.06, -0.47)
LIDAR_ELEVATIONS_DEG = (2.0, -24.8)
LIDAR_BEAMS = 64
LIDAR_AZIMUTHS = 2000
LIDAR_RANGE = 120.0


def relative_pose(scene, frame_a, frame_b):
    """``[4,4]`` rigid transform from camera ``a`` to camera ``b``: ``X_b = T X_a`` (homogeneous)."""
    return np.linalg.inv(scene.cam_to_world[frame_b]) @ scene.cam_to_world[frame_a]


def pose_to_vec(transform):
    """``[4,4]`` (or ``[3,4]``) transform -> ``[6]`` ``(tx, ty, tz, rx, ry, rz)`` with ``R = Rx Ry Rz``."""
    rotation = torch.from_numpy(np.asarray(transform, np.float64)[None, :3, :3])
    return np.concatenate([transform[:3, 3], mat2euler(rotation)[0].numpy()])


def object_translation(scene, car, frame_a, frame_b):
    """``[3]`` translation that car ``car`` (1-based) adds to the ego motion a -> b, in camera ``b``.

    For a point of the car, ``X_b = R X_a + t + object_translation`` with ``[R|t]`` the ego pose.
    """
    track = scene.objects[car - 1]
    move = track.world_poses[frame_b, :3, 3] - track.world_poses[frame_a, :3, 3]
    return scene.cam_to_world[frame_b, :3, :3].T @ move


def motion_field(scene, frame_a, frame_b):
    """Insta-DM motion field from frame ``a`` to ``b``: ``[6,H,W]`` float32.

    Channels 0..2: ego translation plus, on each car's pixels of frame ``a``, the car's translation;
    channels 3..5: ego euler rotation (constant).  ``inverse_warp_mof`` of frame ``b`` with it and
    the depth of frame ``a`` reproduces frame ``a``.
    """
    ego = pose_to_vec(relative_pose(scene, frame_a, frame_b))
    extra = np.stack([np.zeros(3)] + [object_translation(scene, j + 1, frame_a, frame_b)
                                      for j in range(len(scene.objects))])
    field = np.empty((6,) + scene.depths.shape[1:])
    field[:3] = (ego[:3] + extra[scene.instance_maps[frame_a]]).transpose(2, 0, 1)
    field[3:] = ego[3:, None, None]
    return field.astype(np.float32)


def velo_to_cam2():
    """``[4,4]`` velodyne-to-renderer-camera (KITTI camera 2) transform."""
    transform = np.eye(4)
    transform[:3, :3] = VELO_TO_CAM0_R
    transform[:3, 3] = VELO_TO_CAM0_T + CAM2_FROM_CAM0
    return transform


def lidar_directions(beams=LIDAR_BEAMS, azimuths=LIDAR_AZIMUTHS):
    """``[beams*azimuths,3]`` unit ray directions of a spinning lidar in the velodyne frame (x fwd, y left, z up)."""
    elevation = np.radians(np.linspace(*LIDAR_ELEVATIONS_DEG, beams))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)[None]
    dirs = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)), -1)
    return dirs.reshape(-1, 3)


def render_lidar(scene, frame, beams=LIDAR_BEAMS, azimuths=LIDAR_AZIMUTHS, max_range=LIDAR_RANGE):
    """Scan of a 64-beam spinning lidar mounted like KITTI's (1.73 m high, 0.27 m behind the camera).

    The scan is instantaneous (no motion distortion).  Returns ``[N,4]`` float32 points
    ``(x, y, z, reflectance)`` in the velodyne frame, hits within ``max_range`` only.
    """
    velo_to_world = scene.cam_to_world[frame] @ velo_to_cam2()
    dirs_velo = lidar_directions(beams, azimuths)
    boxes = scene.world.boxes_at(frame)
    t, index = cast_rays(boxes, velo_to_world[:3, 3], dirs_velo @ velo_to_world[:3, :3].T)
    keep = t <= max_range
    points = dirs_velo[keep] * t[keep, None]
    return np.column_stack([points, lidar_reflectance(boxes, index[keep])]).astype(np.float32)


def devkit_projection(K):
    """``[3,3]`` K in the KITTI devkit's 1-based pixel convention: principal point ``(cx + 1, cy + 1)``.

    The devkit takes pixel ``round(u) - 1``; with this shift it lands on the renderer's own pixel.
    """
    shifted = np.array(K, float)
    shifted[:2, 2] += 1
    return shifted
