"""Preview of a synthetic scene: a contact sheet of image, depth, instance masks and forward flow."""
from pathlib import Path

import numpy as np
from PIL import Image

from fileio import atomic_open


def flow_to_colour(flow, max_magnitude=None):
    """Colour-code ``[H,W,2]`` flow (hue = direction, saturation = magnitude): uint8 ``[H,W,3]``.

    The colour of a flow vector is the colour wheel's colour of the opposite vector, and the
    magnitude scale defaults to the 99th percentile.
    """
    from visualization import direction_wheel
    magnitude = np.linalg.norm(flow, axis=2)
    scale = max_magnitude or max(float(np.percentile(magnitude, 99)), 1e-6)
    return (direction_wheel(-flow[..., 0], -flow[..., 1], scale) * 255).astype(np.uint8)


def depth_to_colour(depth, max_inverse=None):
    """Colour-code ``[H,W]`` depth by inverse depth (magma), sky black: uint8 ``[H,W,3]``.  The brightest colour is
    ``max_inverse`` (default: the frame's own largest inverse depth; give one value to compare several maps)."""
    from matplotlib import colormaps
    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0)
    top = float(inverse.max()) if max_inverse is None else max_inverse
    scaled = np.clip(inverse / max(top, 1e-6), 0.0, 1.0)
    rgb = (colormaps['magma'](scaled)[..., :3] * 255).astype(np.uint8)
    rgb[depth <= 0] = 0
    return rgb


def masks_to_colour(image, masks):
    """Instance masks ``[1+N,H,W]`` over a dimmed ``[H,W,3]`` image, one colour per channel."""
    from matplotlib import colormaps
    out = image.astype(float) * 0.35
    colours = colormaps['tab10'](np.arange(max(len(masks) - 1, 1)) % 10)[:, :3] * 255
    for channel in range(1, len(masks)):
        on = masks[channel] > 0
        out[on] = 0.3 * image[on] + 0.7 * colours[channel - 1]
    return out.astype(np.uint8)


def contact_sheet(scene, rows=3):
    """uint8 ``[rows*H, 4*W, 3]`` sheet: image | depth | instance masks | forward flow (occluded dark)."""
    frames = np.unique(np.linspace(0, scene.frames - 2, rows).round().astype(int))
    lines = []
    for k in frames:
        flow = flow_to_colour(scene.flow_f[k])
        flow[scene.occlusion_f[k]] = flow[scene.occlusion_f[k]] // 4
        lines.append(np.concatenate([scene.images[k], depth_to_colour(scene.depths[k]),
                                     masks_to_colour(scene.images[k], scene.masks[k]), flow], 1))
    return np.concatenate(lines, 0)


def save_preview(scene, path):
    """Save :func:`contact_sheet` at ``path`` as a 256-colour (octree, dithered) PNG of about 100 KB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(contact_sheet(scene)).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    with atomic_open(path) as handle:
        image.save(handle, format='PNG', optimize=True)
