"""Figures of the unified visual odometry demo (``demo.py``): instance overlays, motion arrows, depth and the
3-D view of the camera trajectory and the object tracks (matplotlib, headless)."""
from dataclasses import dataclass, field

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fileio import atomic_open  # noqa: E402
from visualization import colorize  # noqa: E402
from demo_odometry import project_points, to_world  # noqa: E402


TRACK_COLOURS = plt.get_cmap('tab10').colors
FIGURE_DPI = 80
CLOUD_POINTS_IN_FIGURE = 2500


def track_colour(track_id):
    """RGB colour in [0, 1] of a track id (fixed for the whole run)."""
    return TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)]


def save_figure(fig, path):
    """Render a matplotlib figure once, save it as PNG atomically and return it as ``[H,W,3]`` uint8."""
    fig.set_dpi(FIGURE_DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    with atomic_open(path) as handle:
        Image.fromarray(rgb).save(handle, format='PNG')
    return rgb


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
