"""The KITTI odometry layout: sequences, frames and pose files.

    DATASET/sequences/NN/image_2/000000.png ...   left colour camera frames
    DATASET/sequences/NN/calib.txt                P0..P3 (3x4 projections), Tr (velodyne -> camera 0)
    DATASET/poses/NN.txt                          ground truth (sequences 00-10 only)

A pose file has one line per frame: 12 numbers, the rows of the top 3x4 of the camera-to-world
transform (camera 0 of that frame -> camera 0 of frame 0).  The official ground truth of sequences
09 and 10 ships in ``kitti_eval/odometry_gt/`` and is used when the dataset has no ``poses/``.
"""
from pathlib import Path

import numpy as np

from fileio import atomic_open

BUNDLED_GT_DIR = Path(__file__).resolve().parent / 'odometry_gt'
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


class PoseFileError(ValueError):
    """A pose file or sequence folder that cannot be used (one-line message naming the file)."""


def read_poses(path):
    """Read a KITTI pose file -> ``[F,4,4]`` float64 camera-to-world transforms.

    Raises:
        FileNotFoundError: no such file.
        PoseFileError: a line that is not 12 finite numbers, or no pose at all (message ``PATH:LINE: ...``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pose file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise PoseFileError(f"{path}:{number}: not a number in {line.strip()[:60]!r}") from None
        if len(values) != 12:
            raise PoseFileError(f"{path}:{number}: expected 12 numbers (the top 3x4 of a camera-to-world pose), "
                                f"found {len(values)}")
        if not np.isfinite(values).all():
            raise PoseFileError(f"{path}:{number}: non-finite number")
        rows.append(values)
    if not rows:
        raise PoseFileError(f"{path}: no poses in the file")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :4] = np.array(rows).reshape(-1, 3, 4)
    return poses


def format_poses(poses):
    """``[F,4,4]`` (or ``[F,3,4]``) poses -> KITTI pose file text (12 numbers a line)."""
    rows = np.asarray(poses, np.float64)[:, :3, :4].reshape(-1, 12)
    return ''.join(' '.join(f'{value:.9e}' for value in row) + '\n' for row in rows)


def write_poses(path, poses):
    """Write ``[F,4,4]`` poses as a KITTI pose file, atomically."""
    with atomic_open(path) as handle:
        handle.write(format_poses(poses).encode())


def sequence_folder(dataset_dir, sequence):
    """``DATASET/sequences/NN``; one-line FileNotFoundError when it or its ``image_2`` is missing."""
    folder = Path(dataset_dir) / 'sequences' / sequence
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: sequence {sequence} not found (expected the KITTI odometry layout "
                                f"DATASET/sequences/NN/image_2/)")
    if not (folder / 'image_2').is_dir():
        raise FileNotFoundError(f"{folder / 'image_2'}: frames of sequence {sequence} not found")
    return folder


def sequence_frames(dataset_dir, sequence):
    """Sorted frame paths of ``sequences/NN/image_2``; a one-line error when fewer than 2."""
    folder = sequence_folder(dataset_dir, sequence) / 'image_2'
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(frames) < 2:
        raise PoseFileError(f"{folder}: {len(frames)} frame(s); ego-motion needs at least 2")
    return frames


def ground_truth_path(dataset_dir, sequence):
    """``DATASET/poses/NN.txt`` if it exists, else the bundled ``kitti_eval/odometry_gt/NN.txt``, else None."""
    for path in (Path(dataset_dir) / 'poses' / f'{sequence}.txt', BUNDLED_GT_DIR / f'{sequence}.txt'):
        if path.is_file():
            return path
    return None
