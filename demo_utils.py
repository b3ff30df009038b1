"""Helpers of the unified visual odometry demo (``demo.py``): trajectory, tracks, files and figures.

Conventions: camera frame x right, y down, z forward; a pose "from frame t to frame t+1" maps
camera-t points into camera t+1 (``X_{t+1} = R X_t + t``); the world frame is the camera of the
first frame; ``cam_to_world[t]`` maps camera-t points to the world.
"""
import json
import os
import secrets
from dataclasses import dataclass, field

import matplotlib

matplotlib.use('Agg')
import imageio.v2 as imageio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from datasets.io import DatasetError, atomic_open, atomic_write_bytes  # noqa: E402
from inverse_warp import pose_vec2mat  # noqa: E402
from kitti_eval.kitti_odometry import read_poses, write_poses  # noqa: E402
from kitti_eval.odometry_metrics import chain_poses  # noqa: E402
from visualization import colorize  # noqa: E402

PLY_PROPERTIES = (('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'), ('green', 'u1'), ('blue', 'u1'))
PLY_TYPES = {'float': '<f4', 'float32': '<f4', 'double': '<f8', 'float64': '<f8', 'uchar': 'u1', 'uint8': 'u1',
             'char': 'i1', 'int8': 'i1', 'ushort': '<u2', 'uint16': '<u2', 'short': '<i2', 'int16': '<i2',
             'uint': '<u4', 'uint32': '<u4', 'int': '<i4', 'int32': '<i4'}
TRACK_COLOURS = plt.get_cmap('tab10').colors
FIGURE_DPI = 80
CLOUD_POINTS_IN_FIGURE = 2500


# ---------------------------------------------------------------- trajectory and geometry

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


def write_kitti_trajectory(path, cam_to_world):
    """Write ``[F,4,4]`` camera-to-world poses in the KITTI odometry format (12 numbers a line), atomically."""
    write_poses(path, cam_to_world)


def read_kitti_trajectory(path):
    """Read a KITTI odometry pose file -> ``[F,4,4]`` float64 camera-to-world transforms."""
    return read_poses(path)


# ---------------------------------------------------------------- tracks

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


def track_colour(track_id):
    """RGB colour in [0, 1] of a track id (fixed for the whole run)."""
    return TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)]


# ---------------------------------------------------------------- files

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


def save_figure(fig, path):
    """Render a matplotlib figure once, save it as PNG atomically and return it as ``[H,W,3]`` uint8."""
    fig.set_dpi(FIGURE_DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    with atomic_open(path) as handle:
        Image.fromarray(rgb).save(handle, format='PNG')
    return rgb


ANIMATION_FORMATS = ('mp4', 'gif')


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


# ---------------------------------------------------------------- figures

def overlay_instances(image, masks, colours, alpha=0.5):
    """Blend instance colours into an image.

    Args:
        image: ``[H,W,3]`` float RGB in [0, 1].
        masks: ``[M,H,W]`` binary masks (later masks drawn over earlier ones).
        colours: ``[M,3]`` RGB in [0, 1].
    Returns:
        ``[H,W,3]`` float RGB.
    """
    if len(masks) == 0:
        return image
    masks = np.asarray(masks, bool)
    covered = masks.any(0)
    owner = len(masks) - 1 - np.argmax(masks[::-1], axis=0)
    colour_map = np.asarray(colours, np.float64)[owner]
    return np.where(covered[..., None], (1 - alpha) * image + alpha * colour_map, image)


def frustum_lines(cam_to_world, K, image_hw, size):
    """Edges of a camera frustum (apex at the centre, image plane at depth ``size``): ``[8,2,3]`` world points."""
    height, width = image_hw
    corners_px = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float)
    corners = size * corners_px @ np.linalg.inv(K).T
    corners, apex = to_world(cam_to_world, corners), cam_to_world[:3, 3]
    edges = [(apex, corner) for corner in corners] + [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    return np.array(edges)


def plot_axes_coords(points):
    """World points ``[...,3]`` (x right, y down, z forward) -> plot coordinates (x, z, -y): z is up on screen."""
    points = np.asarray(points)
    return points[..., 0], points[..., 2], -points[..., 1]


def scene_limits(points, margin=0.1):
    """Cube ``(centre [3], half size)`` in plot coordinates that holds ``[N,3]`` world points."""
    xs, ys, zs = plot_axes_coords(points)
    coords = np.stack([xs, ys, zs], 1)
    coords = coords[np.isfinite(coords).all(1)]
    lo, hi = coords.min(0), coords.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2 * (1 + margin), 1e-3)


def draw_trajectory_view(ax, frame, view):
    """3-D view: camera trajectory and frusta, point cloud sample, object tracks and motion arrows.

    Args:
        ax: a matplotlib 3-D axis.
        frame: index of the current frame.
        view: ``FrameView`` with the run's trajectory, tracks and the current cloud.
    """
    centres = view.cam_to_world[:, :3, 3]
    ax.plot(*plot_axes_coords(centres), color='0.75', lw=1)
    ax.plot(*plot_axes_coords(centres[:frame + 1]), color='k', lw=1.5)
    for t in sorted({0, frame}):
        colour = 'red' if t == frame else '0.4'
        for start, end in frustum_lines(view.cam_to_world[t], view.K, view.image_hw, view.frustum_size):
            ax.plot(*plot_axes_coords(np.stack([start, end])), color=colour, lw=1)
    cloud, cloud_colours = view.cloud
    if len(cloud):
        ax.scatter(*plot_axes_coords(cloud), c=cloud_colours / 255.0, s=1, linewidths=0)
    for track_id, track in view.tracks.items():
        shown = [i for i, t in enumerate(track['frames']) if t <= frame]
        if not shown:
            continue
        positions = np.array([track['positions'][i] for i in shown])
        colour = track_colour(track_id)
        ax.plot(*plot_axes_coords(positions), color=colour, lw=2)
        if track['frames'][shown[-1]] == frame:
            ax.scatter(*plot_axes_coords(positions[-1:]), color=colour, s=30)
            motion = track['motion'][shown[-1]]
            if motion is not None:
                tip = positions[-1] + view.arrow_frames * np.asarray(motion)
                ax.plot(*plot_axes_coords(np.stack([positions[-1], tip])), color=colour, lw=2, ls='--')
    centre, half = view.limits
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_xlabel('x (right)', fontsize=7)
    ax.set_ylabel('z (forward)', fontsize=7)
    ax.set_zlabel('up', fontsize=7)
    ax.tick_params(labelsize=6)
    ax.view_init(elev=25, azim=-70)
    ax.set_title('camera trajectory (red: current), objects', fontsize=9)


@dataclass
class FrameView:
    """What the figure of one frame needs besides its image and depth."""

    K: np.ndarray             # [3,3] intrinsics
    image_hw: tuple           # (H, W)
    cam_to_world: np.ndarray  # [F,4,4] the whole trajectory
    tracks: dict              # {id: {'frames': [t], 'positions': [[3]] world, 'motion': [[3] world or None]}}
    limits: tuple             # (centre [3], half size) of the 3-D view, fixed for the run
    frustum_size: float       # depth of the drawn camera frusta
    arrow_frames: float       # arrows show the motion extrapolated over this many frames
    cloud: tuple = field(default_factory=lambda: (np.zeros((0, 3)), np.zeros((0, 3), np.uint8)))  # world, colours


def image_arrows(frame, view):
    """Motion arrows of the objects visible in ``frame``, in pixels: ``{id: (start [2], tip [2])}``.

    The arrow goes from the projected object position to the projection of the position moved by
    ``arrow_frames`` times its per-frame motion.
    """
    world_to_cam = np.linalg.inv(view.cam_to_world[frame])
    arrows = {}
    for track_id, track in view.tracks.items():
        if frame not in track['frames']:
            continue
        i = track['frames'].index(frame)
        if track['motion'][i] is None:
            continue
        start = np.asarray(track['positions'][i])
        tip = start + view.arrow_frames * np.asarray(track['motion'][i])
        ends = to_world(world_to_cam, np.stack([start, tip]))
        if np.all(ends[:, 2] > 1e-2):
            pixels = project_points(view.K, ends)
            arrows[track_id] = (pixels[0], pixels[1])
    return arrows


def render_frame_figure(path, frame, image, depth, instances, view, title=''):
    """Save the demo figure of one frame and return it as an ``[H',W',3]`` uint8 array.

    Left: the image with instance overlays, track ids and motion arrows, and the colour-mapped
    inverse depth; right: the 3-D view of the trajectory and the object tracks.

    Args:
        path: PNG file to write.
        frame: frame index.
        image: ``[H,W,3]`` uint8 RGB.
        depth: ``[H,W]`` predicted depth.
        instances: ``{track id: [H,W] bool mask}`` of the frame.
        view: :class:`FrameView`.
        title: text above the image.
    """
    ids = sorted(instances)
    masks = np.array([instances[i] for i in ids]).reshape(-1, *depth.shape)
    overlay = overlay_instances(image / 255.0, masks, [track_colour(i) for i in ids])
    fig = plt.figure(figsize=(13, 5))
    grid = fig.add_gridspec(2, 2, width_ratios=(1.7, 1), left=0.01, right=0.99, top=0.93, bottom=0.03,
                            wspace=0.02, hspace=0.15)
    ax_image, ax_depth = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    ax_image.imshow(overlay)
    for track_id, (start, tip) in image_arrows(frame, view).items():
        ax_image.annotate('', xy=tip, xytext=start, annotation_clip=False,
                          arrowprops=dict(arrowstyle='->', color=track_colour(track_id), lw=2))
    for track_id, mask in zip(ids, masks):
        rows, cols = np.nonzero(mask)
        if len(rows):
            ax_image.text(cols.mean(), rows.min() - 2, f'#{track_id}', color='white', fontsize=8, ha='center',
                          va='bottom', bbox=dict(facecolor=track_colour(track_id), pad=1, lw=0))
    ax_image.set_xlim(0, depth.shape[1] - 1)
    ax_image.set_ylim(depth.shape[0] - 1, 0)
    ax_image.set_title(title, fontsize=9)
    ax_depth.imshow(colorize(1.0 / depth))
    ax_depth.set_title('depth (colour: inverse depth)', fontsize=9)
    for ax in (ax_image, ax_depth):
        ax.axis('off')
    draw_trajectory_view(fig.add_subplot(grid[:, 1], projection='3d'), frame, view)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
