"""A tiny raw-KITTI drive with known lidar pixels, shared by the evaluation tests.

The calibration is hand-written (KITTI-like rotations and offsets); points are placed so that
the devkit projection (``round(u) - 1``, ``round(v) - 1``) lands them on chosen pixels with
chosen depths, plus points that must be dropped (behind the sensor, outside the image) and a
collision where the nearer point must win.
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATE = '2011_09_26'
DRIVE = f'{DATE}_drive_0001_sync'
IMAGE_SHAPE = (70, 110)  # H, W of the pngs (not a multiple of 32: test_disp must resize)
VELO_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # velodyne -> camera axes
VELO_T = np.array([0.05, -0.08, -0.27])
RECT_ANGLE = 0.01


def rect_rotation():
    """R_rect_00: a small rotation about the camera y axis."""
    c, s = np.cos(RECT_ANGLE), np.sin(RECT_ANGLE)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def projection(camera):
    """P_rect_0{camera}: 1-based principal point as in the devkit, KITTI-like translation column."""
    baseline = 0.0 if camera == 2 else -0.54
    return np.array([[60.0, 0.0, 56.0, 60.0 * baseline + 0.7],
                     [0.0, 60.0, 36.0, 0.2],
                     [0.0, 0.0, 1.0, 0.003]])


def velodyne_points_at(pixels, depths, camera):
    """Velodyne points that project to ``pixels`` ([K,2] (row, col), 0-based) with third coordinate ``depths``."""
    P = projection(camera)
    rows, cols = pixels[:, 0].astype(float), pixels[:, 1].astype(float)
    jitter = 0.3  # stays within the rounding cell of the pixel
    u, v = cols + 1 + jitter, rows + 1 - jitter
    z = depths - P[2, 3]
    x = (depths * u - P[0, 2] * z - P[0, 3]) / P[0, 0]
    y = (depths * v - P[1, 2] * z - P[1, 3]) / P[1, 1]
    rectified = np.stack([x, y, z], axis=1)
    camera_points = rectified @ rect_rotation()  # R_rect^T applied to row vectors
    return (camera_points - VELO_T) @ VELO_R  # R^T (X - T)


def calib_texts(camera_matrices):
    """Contents of calib_cam_to_cam.txt and calib_velo_to_cam.txt."""
    fmt = lambda a: ' '.join(f'{v:.12e}' for v in np.ravel(a))  # noqa: E731
    cam = ['calib_time: 09-Jan-2012 13:57:47', 'corner_dist: 9.950000e-02',
           f'R_rect_00: {fmt(rect_rotation())}']
    cam += [f'P_rect_0{c}: {fmt(P)}' for c, P in camera_matrices.items()]
    velo = ['calib_time: 15-Mar-2012 11:37:16', f'R: {fmt(VELO_R)}', f'T: {fmt(VELO_T)}',
            'delta_f: 0.000000e+00 0.000000e+00', 'delta_c: 0.000000e+00 0.000000e+00']
    return '\n'.join(cam) + '\n', '\n'.join(velo) + '\n'


def expected_frame(index):
    """Known GT pixels of frame ``index``: ([K,2] (row, col), [K] depth), nearest already resolved."""
    rng = np.random.default_rng(index)
    height, width = IMAGE_SHAPE
    flat = rng.choice(height * width, size=300, replace=False)
    pixels = np.stack([flat // width, flat % width], axis=1)
    depths = rng.uniform(2.0, 90.0, size=len(pixels))
    return pixels, depths


def frame_points(index, camera):
    """All velodyne points of frame ``index`` (known pixels, a farther duplicate, points to drop)."""
    pixels, depths = expected_frame(index)
    known = velodyne_points_at(pixels, depths, camera)
    farther = velodyne_points_at(pixels[:20], depths[:20] + 5.0, camera)  # collisions: must lose
    behind = np.array([[-5.0, 0.5, 0.2], [-20.0, -1.0, 0.0]])  # velodyne x < 0
    outside = velodyne_points_at(np.array([[-3, 10], [10, IMAGE_SHAPE[1] + 4]]), np.array([10.0, 10.0]), camera)
    points = np.concatenate([farther, known, behind, outside])
    reflectance = np.full((len(points), 1), 0.5)
    return np.hstack([points, reflectance]).astype(np.float32)


def write_raw_drive(root, frames=3, cameras=(2, 3)):
    """Write the drive under ``root``; return the list entries (one per frame and camera)."""
    root = Path(root)
    date_dir, drive_dir = root / DATE, root / DATE / DRIVE
    cam_text, velo_text = calib_texts({c: projection(c) for c in (2, 3)})
    date_dir.mkdir(parents=True, exist_ok=True)
    (date_dir / 'calib_cam_to_cam.txt').write_text(cam_text)
    (date_dir / 'calib_velo_to_cam.txt').write_text(velo_text)
    rng = np.random.default_rng(0)
    entries = []
    for camera in cameras:
        for index in range(frames):
            name = f'{index:010d}'
            image_path = drive_dir / f'image_0{camera}' / 'data' / f'{name}.png'
            image_path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, size=(*IMAGE_SHAPE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(image_path)
            entries.append(image_path.relative_to(root).as_posix())
    velo_dir = drive_dir / 'velodyne_points' / 'data'
    velo_dir.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        # one scan per frame: both cameras see the same points, they land on different pixels
        frame_points(index, 2).tofile(velo_dir / f'{index:010d}.bin')
    return entries


def expected_depth_map(index):
    """Dense expected GT of frame ``index`` seen by camera 2: [H,W] float32."""
    pixels, depths = expected_frame(index)
    depth_map = np.zeros(IMAGE_SHAPE, dtype=np.float32)
    depth_map[pixels[:, 0], pixels[:, 1]] = depths
    return depth_map


@pytest.fixture
def raw_drive(tmp_path):
    """(root, entries) of a 3-frame, camera-2-only raw drive; entries also written to root/test_files.txt."""
    root = tmp_path / 'kitti_raw'
    entries = write_raw_drive(root, frames=3, cameras=(2,))
    (root / 'test_files.txt').write_text('\n'.join(entries) + '\n')
    return root, entries
