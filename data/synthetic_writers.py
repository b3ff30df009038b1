"""Writers of the synthetic world's datasets: the KITTI-VIS, raw-KITTI and KITTI odometry layouts (atomic files)."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data.synthetic_odometry import write_kitti_odometry
from data.synthetic_scene import DATE, SyntheticError, drive_name
from data.synthetic_truth import (CAM2_FROM_CAM0, CAM_BASELINES, VELO_TO_CAM0_R, VELO_TO_CAM0_T, devkit_projection,
                                  render_lidar)
from datasets.io import save_npy, write_cam, write_flo, write_image


JPEG_QUALITY = 95
CONFIG_FILE = 'synthetic_config.json'


def _numbers(values):
    return ' '.join(f'{v:.9e}' for v in np.ravel(values))


def calib_cam_to_cam_text(K, height, width):
    """``calib_cam_to_cam.txt`` of KITTI for the renderer's camera (camera 2, 0.06 m left of camera 0).

    All four cameras share the rectified intrinsics; ``P_rect_0i = K_dev [I | (b_i, 0, 0)]``
    with ``K_dev`` the 1-based devkit version of ``K`` (see :func:`devkit_projection`).
    """
    k_dev = devkit_projection(K)
    lines = ['calib_time: 09-Jan-2012 13:57:47', 'corner_dist: 9.950000e-02']
    for cam, baseline in enumerate(CAM_BASELINES):
        projection = k_dev @ np.column_stack([np.eye(3), [baseline, 0.0, 0.0]])
        lines += [f'S_0{cam}: {_numbers([width, height])}', f'K_0{cam}: {_numbers(k_dev)}',
                  f'D_0{cam}: {_numbers(np.zeros(5))}', f'R_0{cam}: {_numbers(np.eye(3))}',
                  f'T_0{cam}: {_numbers([-baseline, 0.0, 0.0])}', f'S_rect_0{cam}: {_numbers([width, height])}',
                  f'R_rect_0{cam}: {_numbers(np.eye(3))}', f'P_rect_0{cam}: {_numbers(projection)}']
    return '\n'.join(lines) + '\n'


def calib_velo_to_cam_text():
    """``calib_velo_to_cam.txt`` of KITTI: ``X_cam0 = R X_velo + T``."""
    return '\n'.join(['calib_time: 15-Mar-2012 11:37:16', f'R: {_numbers(VELO_TO_CAM0_R)}',
                      f'T: {_numbers(VELO_TO_CAM0_T)}', f'delta_f: {_numbers(np.zeros(2))}',
                      f'delta_c: {_numbers(np.zeros(2))}']) + '\n'


def poses_json(scene):
    """The ground-truth poses of a scene as a JSON-ready dict."""
    return {'scene': scene.name, 'seed': scene.seed, 'frames': scene.frames,
            'K': scene.K.tolist(), 'cam_to_world': scene.cam_to_world.tolist(),
            'world_frame': 'x right, y down, z forward; road plane y = 0; metres',
            'objects': [{'id': j + 1, 'kind': obj.kind, 'size_lwh': obj.size.tolist(),
                         'world_pose': obj.world_poses.tolist(), 'mask_index': obj.mask_index.tolist()}
                        for j, obj in enumerate(scene.objects)]}


def _write_poses(scenes, root):
    (root / 'poses').mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        (root / 'poses' / f'{scene.name}.json').write_text(json.dumps(poses_json(scene), indent=1))


def split_scenes(names):
    """``(train, val)`` scene names: the last ``max(1, n // 5)`` are val; a single scene is in both."""
    if len(names) == 1:
        return list(names), list(names)
    n_val = max(1, len(names) // 5)
    return list(names[:-n_val]), list(names[-n_val:])


def _check_scenes(scenes, root):
    """Writers need at least one scene, all of one image size."""
    if not scenes:
        raise SyntheticError(f"{root}: no scenes to write")
    sizes = {s.images.shape[1:3] for s in scenes}
    if len(sizes) > 1:
        raise SyntheticError(f"{root}: scenes of different image sizes {sorted(sizes)} cannot share one calibration")


def write_kitti_vis(scenes, root):
    """Write scenes in the KITTI-VIS layout under ``root`` (see the module docstring); GT depth for val."""
    _check_scenes(scenes, root)
    root = Path(root)
    train, val = split_scenes([s.name for s in scenes])
    for scene in scenes:
        folders = {kind: root / kind / scene.name for kind in ('image', 'segmentation', 'flow_f', 'flow_b')}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        write_cam(folders['image'] / 'cam.txt', scene.K)
        for k in range(scene.frames):
            write_image(folders['image'] / f'{k:010d}.jpg', scene.images[k], jpeg_quality=JPEG_QUALITY)
            save_npy(folders['segmentation'] / f'{k:010d}.npy', scene.masks[k])
            if scene.name in val:
                save_npy(folders['image'] / f'{k:010d}.npy', scene.depths[k])
        for k in range(scene.frames - 1):
            write_flo(folders['flow_f'] / f'{k:010d}.flo', scene.flow_f[k])
            write_flo(folders['flow_b'] / f'{k:010d}.flo', scene.flow_b[k])
    (root / 'train.txt').write_text(''.join(f'{name}\n' for name in train))
    (root / 'val.txt').write_text(''.join(f'{name}\n' for name in val))
    _write_poses(scenes, root)


def raw_image_entry(index, frame):
    """Eigen-list entry of a frame: ``2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png``."""
    return f'{DATE}/{drive_name(index)}/image_02/data/{frame:010d}.png'


def raw_gt_depth_path(root, entry):
    """Path of the dense renderer depth (``.npy``) of a raw list entry below ``root``."""
    return Path(root) / 'gt_depth' / Path(entry).with_suffix('.npy')


def write_raw_kitti(scenes, root):
    """Write scenes in the raw KITTI layout under ``root`` (frames, lidar scans, calibration, list, dense GT)."""
    _check_scenes(scenes, root)
    root = Path(root)
    date_dir = root / DATE
    date_dir.mkdir(parents=True, exist_ok=True)
    height, width = scenes[0].images.shape[1:3]
    (date_dir / 'calib_cam_to_cam.txt').write_text(calib_cam_to_cam_text(scenes[0].K, height, width))
    (date_dir / 'calib_velo_to_cam.txt').write_text(calib_velo_to_cam_text())
    entries = []
    for scene in scenes:
        drive = date_dir / drive_name(scene.index)
        for sub in ('image_02/data', 'velodyne_points/data'):
            (drive / sub).mkdir(parents=True, exist_ok=True)
        for k in range(scene.frames):
            entry = raw_image_entry(scene.index, k)
            Image.fromarray(scene.images[k]).save(root / entry)
            render_lidar(scene, k).astype('<f4').tofile(drive / 'velodyne_points' / 'data' / f'{k:010d}.bin')
            gt_path = raw_gt_depth_path(root, entry)
            gt_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(gt_path, scene.depths[k])
            entries.append(entry)
    (root / 'test_files.txt').write_text(''.join(f'{e}\n' for e in entries))
    _write_poses(scenes, root)


def write_odometry(scenes, root):
    """Write scenes as KITTI odometry sequences under ``root`` (see ``data/synthetic_odometry.py``)."""
    _check_scenes(scenes, root)
    write_kitti_odometry(scenes, root, devkit_projection, CAM_BASELINES,
                         np.column_stack([VELO_TO_CAM0_R, VELO_TO_CAM0_T]), CAM2_FROM_CAM0)


WRITERS = {'vis': write_kitti_vis, 'raw': write_raw_kitti, 'odometry': write_odometry}
