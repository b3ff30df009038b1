"""Synthetic drives in the KITTI odometry layout, for ``test_pose.py`` and ``kitti_eval/eval_odometry.py``.

Scene ``i`` becomes sequence ``NN = f'{i:02d}'``::

    sequences/NN/image_2/%06d.png   frames (the renderer's camera is KITTI's camera 2)
    sequences/NN/calib.txt          P0..P3 (1-based devkit intrinsics, KITTI baselines), Tr (velodyne -> camera 0)
    sequences/NN/times.txt          timestamps, 10 Hz
    poses/NN.txt                    camera 0 of every frame -> camera 0 of frame 0 (top 3x4, 12 numbers a line)

As in KITTI, the poses are those of camera 0, which sits 0.06 m right of camera 2 with the same
orientation (``X_cam2 = X_cam0 + (0.06, 0, 0)``).  The camera drives 0.5-1.5 m per frame, so the
devkit's 100 m segments need a drive of at least about 80-200 frames (``--frames``).
"""
from pathlib import Path

import numpy as np
from PIL import Image

from kitti_eval.kitti_odometry import write_poses

FRAME_PERIOD = 0.1


def sequence_name(index):
    """KITTI odometry sequence name of scene ``index`` (0-based): ``'00'``, ``'01'``, ..."""
    return f'{index:02d}'


def camera0_trajectory(cam2_to_world, cam2_from_cam0):
    """``[F,4,4]`` KITTI ground truth: camera 0 of every frame in the camera 0 frame of frame 0.

    Args:
        cam2_to_world: ``[F,4,4]`` poses of the rendered camera (camera 2).
        cam2_from_cam0: ``[3]`` translation with ``X_cam2 = X_cam0 + cam2_from_cam0``.
    """
    cam0_to_cam2 = np.eye(4)
    cam0_to_cam2[:3, 3] = cam2_from_cam0
    cam0_to_world = np.asarray(cam2_to_world, np.float64) @ cam0_to_cam2
    return np.linalg.inv(cam0_to_world[0]) @ cam0_to_world


def calib_text(K, baselines, velo_to_cam0):
    """``calib.txt`` of a KITTI odometry sequence: ``P0..P3 = K_dev [I | (b_i, 0, 0)]`` and ``Tr``.

    Args:
        K: ``[3,3]`` intrinsics in the devkit's 1-based convention; baselines: 4 numbers;
        velo_to_cam0: ``[4,4]`` (or ``[3,4]``).
    """
    def numbers(values):
        return ' '.join(f'{v:.12e}' for v in np.ravel(values))
    lines = [f'P{cam}: {numbers(K @ np.column_stack([np.eye(3), [baseline, 0.0, 0.0]]))}'
             for cam, baseline in enumerate(baselines)]
    lines.append(f'Tr: {numbers(np.asarray(velo_to_cam0)[:3, :4])}')
    return '\n'.join(lines) + '\n'


def write_kitti_odometry(scenes, root, devkit_K, baselines, velo_to_cam0, cam2_from_cam0):
    """Write rendered scenes as KITTI odometry sequences under ``root`` (layout in the module docstring).

    Args:
        scenes: ``SyntheticScene`` list; devkit_K: function ``K -> [3,3]`` 1-based intrinsics;
        baselines, velo_to_cam0, cam2_from_cam0: the rig of ``data.synthetic``.
    """
    root = Path(root)
    for scene in scenes:
        name = sequence_name(scene.index)
        folder = root / 'sequences' / name
        (folder / 'image_2').mkdir(parents=True, exist_ok=True)
        for k in range(scene.frames):
            Image.fromarray(scene.images[k]).save(folder / 'image_2' / f'{k:06d}.png')
        (folder / 'calib.txt').write_text(calib_text(devkit_K(scene.K), baselines, velo_to_cam0))
        (folder / 'times.txt').write_text(''.join(f'{k * FRAME_PERIOD:.6e}\n' for k in range(scene.frames)))
        write_poses(root / 'poses' / f'{name}.txt', camera0_trajectory(scene.cam_to_world, cam2_from_cam0))
