"""File formats of the unified visual odometry demo (``demo.py``): trajectory text, JSON, PLY point clouds,
the MP4 / GIF animation.  Every file is written atomically."""
import json
import os
import secrets

import imageio.v2 as imageio
import numpy as np

from datasets.io import DatasetError, atomic_open, atomic_write_bytes
from kitti_eval.kitti_odometry import read_poses, write_poses


PLY_PROPERTIES = (('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'), ('green', 'u1'), ('blue', 'u1'))
PLY_TYPES = {'float': '<f4', 'float32': '<f4', 'double': '<f8', 'float64': '<f8', 'uchar': 'u1', 'uint8': 'u1',
             'char': 'i1', 'int8': 'i1', 'ushort': '<u2', 'uint16': '<u2', 'short': '<i2', 'int16': '<i2',
             'uint': '<u4', 'uint32': '<u4', 'int': '<i4', 'int32': '<i4'}
ANIMATION_FORMATS = ('mp4', 'gif')


def write_kitti_trajectory(path, cam_to_world):
    """Write ``[F,4,4]`` camera-to-world poses in the KITTI odometry format (12 numbers a line), atomically."""
    write_poses(path, cam_to_world)


def read_kitti_trajectory(path):
    """Read a KITTI odometry pose file -> ``[F,4,4]`` float64 camera-to-world transforms."""
    return read_poses(path)


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=1) + '\n').encode())


def write_ply(path, points, colours):
    """Write a coloured point cloud as a binary little-endian PLY, atomically.

    Args:
        points: ``[N,3]`` coordinates (stored as float32).
        colours: ``[N,3]`` uint8 RGB.
    """
    points, colours = np.asarray(points), np.asarray(colours)
    if points.ndim != 2 or points.shape[1] != 3 or colours.shape != points.shape:
        raise ValueError(f"{path}: PLY needs points [N,3] and colours [N,3], got {list(points.shape)} "
                         f"and {list(colours.shape)}")
    vertices = np.empty(len(points), dtype=list(PLY_PROPERTIES))
    for axis, name in enumerate('xyz'):
        vertices[name] = points[:, axis]
    for axis, name in enumerate(('red', 'green', 'blue')):
        vertices[name] = colours[:, axis]
    header = ['ply', 'format binary_little_endian 1.0', 'comment Insta-DM demo point cloud',
              f'element vertex {len(points)}']
    header += [f"property {'float' if kind == '<f4' else 'uchar'} {name}" for name, kind in PLY_PROPERTIES]
    header += ['end_header']
    with atomic_open(path) as handle:
        handle.write(('\n'.join(header) + '\n').encode('ascii'))
        handle.write(vertices.tobytes())


def _parse_ply_header(path, data):
    """``(vertex count, numpy dtype of a vertex, byte offset of the body)`` of a binary little-endian PLY."""
    end = data.find(b'end_header')
    if not data.startswith(b'ply') or end < 0:
        raise DatasetError(path, "not a PLY file (no 'ply' magic or no end_header)")
    lines = data[:end].decode('ascii', errors='replace').splitlines()
    if 'format binary_little_endian 1.0' not in lines:
        raise DatasetError(path, "only binary little-endian PLY files are supported")
    count, fields, element = None, [], None
    for line in lines:
        words = line.split()
        if words[:1] == ['element']:
            element = words[1]
            if element == 'vertex':
                count = int(words[2])
        elif words[:1] == ['property'] and element == 'vertex':
            if words[1] == 'list' or words[1] not in PLY_TYPES:
                raise DatasetError(path, f"unsupported vertex property '{line.strip()}'")
            fields.append((words[2], PLY_TYPES[words[1]]))
    if count is None:
        raise DatasetError(path, "PLY file has no vertex element")
    body = data.index(b'\n', end) + 1
    return count, np.dtype(fields), body


def read_ply(path):
    """Read the vertices of a binary little-endian PLY.

    Returns:
        ``(points [N,3] float32, colours [N,3] uint8 or None when the file has no colours)``.
    """
    with open(path, 'rb') as handle:
        data = handle.read()
    count, dtype, body = _parse_ply_header(path, data)
    if len(data) - body < count * dtype.itemsize:
        raise DatasetError(path, f"PLY body is truncated: {count} vertices need {count * dtype.itemsize} bytes, "
                                 f"found {len(data) - body}")
    vertices = np.frombuffer(data, dtype, count, body)
    points = np.stack([vertices[name] for name in 'xyz'], 1).astype(np.float32)
    names = ('red', 'green', 'blue')
    colours = (np.stack([vertices[name] for name in names], 1).astype(np.uint8)
               if all(name in dtype.names for name in names) else None)
    return points, colours


def even_size(rgb):
    """``[H,W,3]`` frame padded (edge pixels repeated) to an even height and width, as H.264 needs."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode='edge') if pad_h or pad_w else rgb


class AnimationWriter:
    """Animation written frame by frame; the file appears (atomically) when :meth:`close` is called.

    The format follows the file name: ``.mp4`` (H.264, yuv420p, through the ffmpeg binary that the
    ``imageio-ffmpeg`` wheel ships; frames are padded to even sizes) or ``.gif``.
    """

    def __init__(self, path, fps):
        self.path = str(path)
        folder, name = os.path.split(self.path)
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in ('.mp4', '.gif'):
            raise ValueError(f"{self.path}: animation must be .mp4 or .gif")
        self.tmp_path = os.path.join(folder or '.', f'.{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}')
        self.mp4 = suffix == '.mp4'
        if self.mp4:
            self.writer = imageio.get_writer(self.tmp_path, format='FFMPEG', mode='I', fps=fps, codec='libx264',
                                             pixelformat='yuv420p', macro_block_size=1, quality=8)
        else:
            self.writer = imageio.get_writer(self.tmp_path, format='GIF', mode='I', duration=1000.0 / fps, loop=0)

    def append(self, rgb):
        """Add one ``[H,W,3]`` uint8 frame (all frames of one animation have the same size)."""
        self.writer.append_data(even_size(rgb) if self.mp4 else rgb)

    def close(self):
        self.writer.close()
        os.replace(self.tmp_path, self.path)

    def abort(self):
        self.writer.close()
        if os.path.exists(self.tmp_path):
            os.unlink(self.tmp_path)
