"""One compressed ``.npz`` holding the sparse ground truth of a whole file list.

Layout (no pickled objects, so it loads with ``allow_pickle=False``)::

    files    [N]    str      the list entries, in order
    shapes   [N,2]  int32    (H, W) of each ground-truth map (the png size)
    offsets  [N+1]  int64    points of image i are rows/cols/depth[offsets[i]:offsets[i+1]]
    rows     [P]    uint16   pixel rows of the non-zero ground-truth pixels
    cols     [P]    uint16   pixel columns
    depth    [P]    float32  their depth
    velodyne_depth  bool     whether depth is the velodyne x (True) or the camera depth (False)

Storing only the lidar pixels (about 5% of a KITTI frame) takes tens of MB for the Eigen split
instead of the 1.3 GB of its dense maps.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fileio import atomic_open
from kitti_eval.kitti_raw import KittiFormatError, generate_depth_map, locate_frame, missing_file

GT_KEYS = ('files', 'shapes', 'offsets', 'rows', 'cols', 'depth', 'velodyne_depth')


def pack_depth_maps(depth_maps):
    """Sparse arrays of a list of ``[H,W]`` maps: dict with shapes, offsets, rows, cols, depth."""
    rows, cols, depth = [], [], []
    for depth_map in depth_maps:
        r, c = np.nonzero(depth_map)
        rows.append(r.astype(np.uint16))
        cols.append(c.astype(np.uint16))
        depth.append(depth_map[r, c].astype(np.float32))
    counts = np.array([r.size for r in rows], dtype=np.int64)
    return {'shapes': np.array([m.shape for m in depth_maps], dtype=np.int32).reshape(-1, 2),
            'offsets': np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            'rows': np.concatenate(rows) if rows else np.zeros(0, np.uint16),
            'cols': np.concatenate(cols) if cols else np.zeros(0, np.uint16),
            'depth': np.concatenate(depth) if depth else np.zeros(0, np.float32)}


def unpack_depth_maps(arrays):
    """Inverse of :func:`pack_depth_maps`: list of dense ``[H,W]`` float32 maps."""
    maps = []
    for i, (height, width) in enumerate(arrays['shapes']):
        start, stop = arrays['offsets'][i], arrays['offsets'][i + 1]
        depth_map = np.zeros((height, width), dtype=np.float32)
        depth_map[arrays['rows'][start:stop], arrays['cols'][start:stop]] = arrays['depth'][start:stop]
        maps.append(depth_map)
    return maps


def save_gt_depths(path, files, depth_maps, velodyne_depth=False):
    """Write the ground truth of ``files`` to the compressed ``.npz`` ``path`` (atomically)."""
    if len(files) != len(depth_maps):
        raise ValueError(f"{len(files)} files but {len(depth_maps)} depth maps")
    with atomic_open(path) as handle:
        np.savez_compressed(handle, files=np.array(files, dtype=str), velodyne_depth=np.bool_(velodyne_depth),
                            **pack_depth_maps(depth_maps))


def load_gt_depths(path, files=None, velodyne_depth=None):
    """Dense ground-truth maps stored in ``path``; checked against ``files`` / ``velodyne_depth`` if given."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'ground-truth file')
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in GT_KEYS}
    except KeyError as exc:
        raise KittiFormatError(f"{path}: not a ground-truth file of this project (no {exc} array)") from None
    except (ValueError, OSError) as exc:
        raise KittiFormatError(f"{path}: not a readable .npz ground-truth file ({exc})") from None
    stored = [str(f) for f in arrays['files']]
    if files is not None:
        check_same_files(path, stored, list(files))
    if velodyne_depth is not None and bool(arrays['velodyne_depth']) != velodyne_depth:
        kind = 'velodyne x' if arrays['velodyne_depth'] else 'camera depth'
        raise KittiFormatError(f"{path}: holds {kind} ground truth; export it again with the same "
                               f"--vel_depth setting as the evaluation")
    return unpack_depth_maps(arrays)


def check_same_files(path, stored, expected):
    """One-line error when a GT file was made for another file list."""
    if len(stored) != len(expected):
        raise KittiFormatError(f"{path}: holds ground truth for {len(stored)} images but the list has "
                               f"{len(expected)}; export it again for this list")
    mismatch = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b), None)
    if mismatch is not None:
        raise KittiFormatError(f"{path}: entry {mismatch} is {stored[mismatch]!r} but the list has "
                               f"{expected[mismatch]!r}; export it again for this list")


def generate_gt_depths(kitti_dir, files, velodyne_depth=False, progress=True):
    """Ground truth of every list entry from the raw data: list of ``[H,W]`` float32 maps."""
    if kitti_dir is None or not Path(kitti_dir).is_dir():
        raise missing_file(kitti_dir, 'raw KITTI folder')
    frames = [locate_frame(kitti_dir, entry) for entry in files]
    return [generate_depth_map(frame, velodyne_depth)
            for frame in tqdm(frames, desc='ground truth', unit='img', disable=not progress)]


def ground_truth_depths(kitti_dir, files, gt_file=None, velodyne_depth=False, progress=True):
    """GT maps of ``files``: read from ``gt_file`` when it exists, else projected from the raw data.

    When ``gt_file`` is given but does not exist yet, the projected GT is saved there as a cache.
    """
    if gt_file is not None and Path(gt_file).is_file():
        return load_gt_depths(gt_file, files, velodyne_depth)
    depth_maps = generate_gt_depths(kitti_dir, files, velodyne_depth, progress)
    if gt_file is not None:
        save_gt_depths(gt_file, files, depth_maps, velodyne_depth)
    return depth_maps
