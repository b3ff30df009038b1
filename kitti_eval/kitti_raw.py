"""Ground-truth depth of raw KITTI frames, projected from the velodyne scans.

Follows the KITTI devkit convention behind every published Eigen-split number: velodyne points
with ``x >= 0`` are projected with ``P_rect_0{2|3} @ R_rect_00 @ [R|T]``, divided by the third
coordinate, and land on pixel ``(round(u) - 1, round(v) - 1)``; points in front of the camera and
inside the image are kept; where several points land on one pixel the nearest wins.

A file list entry looks like ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png``
(relative to the raw KITTI root): the date folder holds the calibration files, the drive folder
holds ``velodyne_points/data/0000000069.bin``, and ``image_02``/``image_03`` picks camera 2 or 3.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fileio import read_list_lines

CAMERA_FOLDERS = {'image_02': 2, 'image_03': 3}
VELODYNE_FIELDS = 4  # x, y, z, reflectance (float32 each)


class KittiFormatError(ValueError):
    """A raw KITTI file exists but cannot be used (one-line message naming the file)."""


def missing_file(path, what):
    """One-line FileNotFoundError naming ``path`` and what it should have been."""
    return FileNotFoundError(f"{path}: {what} not found")


@dataclass(frozen=True)
class KittiFrame:
    """Paths of everything needed for the ground truth of one listed image."""

    image: Path
    velodyne: Path
    calib_dir: Path
    camera: int


def camera_index(image_path):
    """2 or 3, from the ``image_02`` / ``image_03`` folder in ``image_path``."""
    cameras = [CAMERA_FOLDERS[part] for part in Path(image_path).parts if part in CAMERA_FOLDERS]
    if len(cameras) != 1:
        raise KittiFormatError(f"{image_path}: cannot tell the camera (expected exactly one "
                               f"'image_02' or 'image_03' folder in the path)")
    return cameras[0]


def locate_frame(kitti_dir, entry):
    """Paths of a list entry ``DATE/DRIVE/image_0X/data/NAME.png`` below ``kitti_dir`` (not checked)."""
    entry = entry.strip()
    if len(Path(entry).parts) < 5:
        raise KittiFormatError(f"{entry!r}: list entry is not of the form DATE/DRIVE/image_0X/data/NAME.png")
    image = Path(kitti_dir) / entry
    camera = camera_index(image)
    drive_dir = image.parent.parent.parent
    velodyne = drive_dir / 'velodyne_points' / 'data' / (image.stem + '.bin')
    return KittiFrame(image=image, velodyne=velodyne, calib_dir=drive_dir.parent, camera=camera)


def check_frame_files(frame):
    """Raise a one-line FileNotFoundError for the first missing file of ``frame``."""
    required = [(frame.image, 'listed image'), (frame.velodyne, 'velodyne scan'),
                (frame.calib_dir / 'calib_cam_to_cam.txt', 'camera calibration file'),
                (frame.calib_dir / 'calib_velo_to_cam.txt', 'velodyne calibration file')]
    for path, what in required:
        if not path.is_file():
            raise missing_file(path, what)


def read_calib_file(path):
    """Numeric entries of a KITTI calibration file: ``{key: 1-D float64 array}``.

    Lines are ``key: numbers``; lines whose value is not numeric (``calib_time: ...``) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'calibration file')
    entries = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        try:
            entries[key.strip()] = np.array([float(x) for x in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return entries


def calib_entry(calib, key, size, path):
    """``calib[key]`` checked to hold ``size`` numbers (one-line error naming the file otherwise)."""
    if key not in calib:
        raise KittiFormatError(f"{path}: no '{key}' entry")
    if calib[key].size != size:
        raise KittiFormatError(f"{path}: '{key}' has {calib[key].size} numbers, expected {size}")
    return calib[key]


def velodyne_to_image_matrix(calib_dir, camera):
    """``P_rect_0{camera} @ R_rect_00 @ [R|T]``: velodyne points (homogeneous) to image, ``[3,4]``."""
    cam_path = Path(calib_dir) / 'calib_cam_to_cam.txt'
    velo_path = Path(calib_dir) / 'calib_velo_to_cam.txt'
    cam_to_cam, velo_to_cam = read_calib_file(cam_path), read_calib_file(velo_path)
    velo_to_cam_4x4 = np.eye(4)
    velo_to_cam_4x4[:3, :3] = calib_entry(velo_to_cam, 'R', 9, velo_path).reshape(3, 3)
    velo_to_cam_4x4[:3, 3] = calib_entry(velo_to_cam, 'T', 3, velo_path)
    rect_4x4 = np.eye(4)
    rect_4x4[:3, :3] = calib_entry(cam_to_cam, 'R_rect_00', 9, cam_path).reshape(3, 3)
    projection = calib_entry(cam_to_cam, f'P_rect_0{camera}', 12, cam_path).reshape(3, 4)
    return projection @ rect_4x4 @ velo_to_cam_4x4


def read_velodyne_points(path):
    """Points of a velodyne ``.bin`` scan: ``[N,4]`` float32 (x, y, z, reflectance)."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'velodyne scan')
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size == 0:
        raise KittiFormatError(f"{path}: empty velodyne scan (0 bytes); the download or extraction is incomplete")
    if raw.size % VELODYNE_FIELDS:
        raise KittiFormatError(f"{path}: {raw.size * 4} bytes is not a whole number of "
                               f"{VELODYNE_FIELDS}-float32 velodyne points")
    return raw.reshape(-1, VELODYNE_FIELDS)


def image_size(path):
    """``(height, width)`` of an image, read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'listed image')
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise KittiFormatError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return height, width


def project_points(points, velo_to_image, shape, velodyne_depth=False):
    """Sparse depth map of velodyne points: ``[H,W]`` float32, 0 where no point landed.

    Args:
        points: ``[N,3+]`` velodyne points (x forward, y left, z up; extra columns ignored).
        velo_to_image: ``[3,4]`` projection matrix (``P_rect @ R_rect @ [R|T]``).
        shape: ``(H, W)`` of the image.
        velodyne_depth: store the velodyne ``x`` instead of the camera depth (the SfMLearner
            lineage's ``vel_depth=True``); the default is the third projected coordinate.
    """
    height, width = shape
    points = points[points[:, 0] >= 0, :3].astype(np.float64)
    projected = points @ velo_to_image[:, :3].T + velo_to_image[:, 3]
    in_front = projected[:, 2] > 0
    points, projected = points[in_front], projected[in_front]
    cols = np.round(projected[:, 0] / projected[:, 2]) - 1
    rows = np.round(projected[:, 1] / projected[:, 2]) - 1
    depth = points[:, 0] if velodyne_depth else projected[:, 2]
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    return nearest_depth_map(rows[inside].astype(np.int64), cols[inside].astype(np.int64),
                             depth[inside], shape)


def nearest_depth_map(rows, cols, depth, shape):
    """Scatter ``depth`` to ``(rows, cols)``, the smallest depth winning on collisions: ``[H,W]`` float32."""
    flat_index = rows * shape[1] + cols
    order = np.lexsort((depth, flat_index))
    flat_index, depth = flat_index[order], depth[order]
    first = np.ones(flat_index.size, dtype=bool)
    first[1:] = flat_index[1:] != flat_index[:-1]
    depth_map = np.zeros(shape[0] * shape[1], dtype=np.float32)
    depth_map[flat_index[first]] = depth[first]
    return depth_map.reshape(shape)


def generate_depth_map(frame, velodyne_depth=False):
    """Ground-truth depth of one :class:`KittiFrame` at its image size: ``[H,W]`` float32 (0 = no GT)."""
    check_frame_files(frame)
    velo_to_image = velodyne_to_image_matrix(frame.calib_dir, frame.camera)
    points = read_velodyne_points(frame.velodyne)
    return project_points(points, velo_to_image, image_size(frame.image), velodyne_depth)


def read_file_list(path):
    """Non-empty, stripped lines of a file list."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'file list')
    try:
        entries = read_list_lines(path)
    except ValueError as error:
        raise KittiFormatError(f"{path}: {error}") from None
    if not entries:
        raise KittiFormatError(f"{path}: file list is empty")
    return entries
