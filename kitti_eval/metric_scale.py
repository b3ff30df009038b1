"""Metric depth for ``test_disp.py``: scale each prediction by the camera height above the fitted road.

The intrinsics of a listed frame come from its drive's ``calib_cam_to_cam.txt`` (``P_rect_0{2|3}``),
rescaled to the network resolution; a sequence is the folder of the listed image (one drive and
camera).  The plane fit itself is in ``ground_plane.py``.
"""
from pathlib import Path

import numpy as np

from ground_plane import DEFAULT_CAMERA_HEIGHT, SCALE_MODES, describe_scales, metric_scales
from kitti_eval.kitti_raw import calib_entry, image_size, locate_frame, read_calib_file

SCALE_SOURCES = ('none', 'camera-height')


def add_scale_options(parser):
    """``--scale-from``, ``--camera-height``, ``--scale-per`` (shared by test_disp.py and demo.py)."""
    parser.add_argument('--scale-from', choices=SCALE_SOURCES, default='none',
                        help='camera-height: make depth metric with the camera height above the fitted road plane '
                             '(then evaluated without median scaling)')
    parser.add_argument('--camera-height', type=float, default=DEFAULT_CAMERA_HEIGHT,
                        help='camera height above the road in metres (KITTI: 1.65)')
    parser.add_argument('--scale-per', choices=SCALE_MODES, default='sequence',
                        help='camera-height scale per image, or the median of a sequence\'s per-image scales')


def frame_intrinsics(kitti_dir, entry, height, width):
    """``[3,3]`` intrinsics (0-based pixel centres) of a listed frame at the network resolution ``height x width``.

    ``P_rect`` projects to the devkit's 1-based pixels (the GT uses ``round(u) - 1``), so the principal
    point moves by one pixel; resizing maps ``u -> (u + 0.5) * s - 0.5``.
    """
    frame = locate_frame(kitti_dir, entry)
    path = frame.calib_dir / 'calib_cam_to_cam.txt'
    K = calib_entry(read_calib_file(path), f'P_rect_0{frame.camera}', 12, path).reshape(3, 4)[:, :3].copy()
    K[:2, 2] -= 1
    image_height, image_width = image_size(frame.image)
    for row, factor in ((0, width / image_width), (1, height / image_height)):
        K[row, row] *= factor
        K[row, 2] = (K[row, 2] + 0.5) * factor - 0.5
    return K


def sequence_of(entry):
    """The sequence a listed frame belongs to: its folder (``DATE/DRIVE/image_0X/data``)."""
    return str(Path(entry.strip()).parent)


def scale_to_metric(depths, files, kitti_dir, camera_height=DEFAULT_CAMERA_HEIGHT, mode='sequence'):
    """``[N,h,w]`` predicted depths scaled by the camera height; prints how the scales came out.

    Returns:
        ``(metric depths [N,h,w] float32, scales [N])``.
    """
    if camera_height <= 0:
        raise ValueError(f"--camera-height {camera_height}: must be positive (metres)")
    height, width = depths.shape[1:]
    intrinsics = np.stack([frame_intrinsics(kitti_dir, entry, height, width) for entry in files])
    scales, per_image = metric_scales(depths, intrinsics, [sequence_of(e) for e in files], camera_height, mode)
    print(describe_scales(scales, per_image) + f" ({mode} scales, camera height {camera_height} m)")
    return (depths * scales[:, None, None]).astype(np.float32), scales
