"""Colour maps and figures: TensorBoard images and the BREAKPOINT-1/2 debug figures of training."""
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from network_input import denormalise  # noqa: E402


def image_to_numpy(img):
    """Normalised image ``[3,H,W]`` (range -1..1) -> ``[H,W,3]`` float array in [0, 1]."""
    return denormalise(img.detach().float().cpu()).clamp(0, 1).permute(1, 2, 0).numpy()


def colorize(values, cmap='magma', vmin=None, vmax=None):
    """``[H,W]`` map -> ``[H,W,3]`` float RGB in [0, 1] with a matplotlib colour map.

    ``vmin``/``vmax`` default to the 1st and 99th percentiles, so outliers do not wash it out.
    """
    values = values.detach().float().cpu().numpy() if torch.is_tensor(values) else np.asarray(values, np.float32)
    lo = np.percentile(values, 1) if vmin is None else vmin
    hi = np.percentile(values, 99) if vmax is None else vmax
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    return plt.get_cmap(cmap)(scaled)[..., :3]


def direction_wheel(dx, dy, scale):
    """Colour wheel of a 2-D vector field given as two ``[H,W]`` arrays: ``[H,W,3]`` floats in [0, 1].

    Hue gives the direction ``atan2(dy, dx)``, saturation the magnitude relative to ``scale``
    (clipped at 1); zero vectors are white.
    """
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    saturation = np.clip(np.hypot(dx, dy) / scale, 0, 1)
    return matplotlib.colors.hsv_to_rgb(np.stack([hue, saturation, np.ones_like(hue)], -1))


def motion_to_rgb(translation, scale=None):
    """``[2,H,W]`` horizontal (x) and forward (z) translations -> ``[H,W,3]`` colour wheel image.

    ``scale`` defaults to the largest magnitude (see :func:`direction_wheel`).
    """
    translation = translation.detach().float().cpu().numpy()
    scale = scale or max(float(np.hypot(translation[0], translation[1]).max()), 1e-12)
    return direction_wheel(translation[0], translation[1], scale)


def to_chw(rgb):
    """``[H,W,3]`` array -> ``[3,H,W]`` float tensor (TensorBoard's layout)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def tensorboard_images(outputs, sample=0):
    """Images of one sample of a step for TensorBoard: ``{tag: [3,H,W]}``.

    Target, its depth, the first reference ego-warped into the target (first projection), fully
    warped (second projection), and the object part of the forward motion field.
    """
    pairs = outputs.pairs
    row = pairs.layout.row(pairs.batch_size, sample, forward=True)   # (t, r_0)
    target_disparity = pairs.layout.split_frames(outputs.disparities)[0][sample, 0]
    return {
        'target': to_chw(image_to_numpy(pairs.views[row])),
        'depth': to_chw(colorize(target_disparity)),
        'ref_ego_warped': to_chw(image_to_numpy(outputs.ego_warped[row])),
        'ref_fully_warped': to_chw(image_to_numpy(outputs.second.warped[row] * outputs.warp_valid[row])),
        'object_motion_field': to_chw(motion_to_rgb(outputs.object_translation[row, [0, 2]])),
    }


def _show(ax, rgb_or_map, title, **kwargs):
    ax.imshow(rgb_or_map, **kwargs)
    ax.set_title(title, fontsize=8)
    ax.axis('off')


def save_breakpoint_figures(outputs, folder, batch_index, sample=0):
    """Save the BREAKPOINT-1 and BREAKPOINT-2 figures of the official README for one sample.

    BREAKPOINT-1 (after the first projection): references and target, ego-warped images both ways,
    their valid masks and warped instance masks.  BREAKPOINT-2 (after the second projection):
    fully warped images, photometric errors, and the forward/backward object motion fields.
    Returns the two file paths.
    """
    os.makedirs(folder, exist_ok=True)
    pairs = outputs.pairs
    view_disparities, _ = pairs.layout.pair_frames(outputs.disparities)
    fwd = pairs.layout.row(pairs.batch_size, sample, forward=True)    # (t, r_0)
    bwd = pairs.layout.row(pairs.batch_size, sample, forward=False)   # (r_0, t)

    fig, axes = plt.subplots(4, 2, figsize=(12, 9))
    _show(axes[0, 0], image_to_numpy(pairs.sources[fwd]), 'reference r_0')
    _show(axes[0, 1], image_to_numpy(pairs.views[fwd]), 'target t')
    _show(axes[1, 0], image_to_numpy(outputs.ego_warped[bwd]), 't -> r_0 (ego only)')
    _show(axes[1, 1], image_to_numpy(outputs.ego_warped[fwd]), 'r_0 -> t (ego only)')
    _show(axes[2, 0], outputs.ego_warp_valid[bwd, 0].cpu().numpy(), 'valid t -> r_0', vmin=0, vmax=1)
    _show(axes[2, 1], outputs.ego_warp_valid[fwd, 0].cpu().numpy(), 'valid r_0 -> t', vmin=0, vmax=1)
    _show(axes[3, 0], outputs.ego_warped_masks[bwd].sum(0).cpu().numpy(), 'warped target instances')
    _show(axes[3, 1], outputs.ego_warped_masks[fwd].sum(0).cpu().numpy(), 'warped reference instances')
    fig.tight_layout()
    first = os.path.join(folder, f'breakpoint1_batch{batch_index:04d}.png')
    fig.savefig(first, dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(4, 2, figsize=(12, 9))
    for column, pair in enumerate((bwd, fwd)):
        name = 't -> r_0' if pair == bwd else 'r_0 -> t'
        warped = outputs.second.warped[pair]
        error = (pairs.views[pair] - warped).abs().mean(0) * outputs.warp_valid[pair, 0]
        _show(axes[0, column], image_to_numpy(warped), f'{name} (ego + objects)')
        _show(axes[1, column], error.detach().cpu().numpy(), f'|error| {name}', cmap='bone', vmin=0, vmax=0.5)
        _show(axes[2, column], colorize(view_disparities[pair, 0]), 'disparity of the view')
        _show(axes[3, column], motion_to_rgb(outputs.object_translation[pair, [0, 2]]), 'object motion field (x, z)')
    fig.tight_layout()
    second = os.path.join(folder, f'breakpoint2_batch{batch_index:04d}.png')
    fig.savefig(second, dpi=80)
    plt.close(fig)
    return first, second
