"""The Insta-DM objective evaluated at the synthetic world's exact depth and motion, and near it.

    python -m experiments.objective_at_truth [--height 96 --width 320 --seed 0 --scenes 0 1 2 3 4]

A diagnostic of issue 18: does the objective (photometric + geometry terms with the official switches
``--with-ssim --with-mask --with-auto-mask``, restricted to pixels valid in both projections) prefer the
truth to the degenerate solutions a network can drift to?  For each scene (3 frames, rendered in memory) it
runs the step's geometry (``projection.first_projection``, ``second_projection``, the loss maps) with

* ``truth + objects``: exact depth and the exact motion field (ego motion plus each car's translation);
* ``truth, rigid``: exact depth and ego motion, no object motion (what a rigid model can express);
* ``depth x s``: exact ego motion, depth scaled by ``s`` (a wrong depth/translation ratio);
* ``flat depth x s``: exact ego motion, one depth everywhere (the median of the exact depth, times ``s``):
  what an untrained DispResNet, whose output has little structure, gives;
* ``rotation only``: exact ego rotation, no translation (the limit of infinite depth);
* ``identity``: no motion at all;

and prints the photometric term (sum over the four directed pairs, as training), the geometry term, and the
share of pixels kept by the validity masks and the auto-mask.  Sky (no depth) is put at 1000 m.
"""
import argparse
import importlib.util
import sys

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m experiments.objective_at_truth")

import numpy as np
import torch

from data import synthetic
from loss_functions import pairwise_masked_means, photometric_and_geometry_maps
from motion_field import MotionField
from network_input import to_network_input
from pairs import PairLayout
from projection import LossOptions, first_projection, make_directed_pairs, second_projection

SKY_DEPTH = 1000.0


def to_tensor(image):
    """``[H,W,3]`` uint8 -> ``[1,3,H,W]`` normalised (:func:`network_input.to_network_input`)."""
    return to_network_input(image)[None]


def directed_frames(target=1, refs=(0, 2)):
    """``(view, source)`` frame indices of the directed pairs, in :class:`pairs.PairLayout` order."""
    frames = [target] + list(refs)
    return [(frames[view], frames[source]) for view, source in PairLayout(len(refs)).frame_pairs()]


def scene_inputs(scene, target=1, refs=(0, 2)):
    """Directed pairs (no instances), exact depths ``[(1+R),1,H,W]``, ego poses ``[P,6]``, exact MotionField."""
    h, w = scene.depths.shape[1:]
    empty = torch.zeros(1, 1, h, w)
    K = torch.from_numpy(scene.K).float()[None]
    pairs = make_directed_pairs(to_tensor(scene.images[target]), [to_tensor(scene.images[r]) for r in refs],
                                [empty] * len(refs), [empty] * len(refs), K)
    frames = [target] + list(refs)
    depths = torch.from_numpy(np.where(scene.depths[frames] > 0, scene.depths[frames], SKY_DEPTH)).float()[:, None]
    order = directed_frames(target, refs)
    ego = torch.tensor(np.stack([synthetic.pose_to_vec(synthetic.relative_pose(scene, a, b))
                                 for a, b in order])).float()
    fields = MotionField.from_channels(torch.from_numpy(np.stack([synthetic.motion_field(scene, a, b)
                                                                  for a, b in order])))
    return pairs, depths, ego, fields


def objective(pairs, depths, ego, fields, options):
    """``(photo, geometry, first-projection valid share, final kept share)`` of one configuration."""
    view_depths, source_depths = pairs.layout.pair_frames(depths)
    _, _, ego_warp_valid = first_projection(pairs, source_depths, ego)
    second = second_projection(pairs, view_depths, source_depths, fields, options)
    diff_img, diff_depth, kept = photometric_and_geometry_maps(
        pairs.views, pairs.sources, second.warped, second.in_image * ego_warp_valid, second.computed_depth,
        second.projected_depth, options.with_ssim, options.with_mask, options.with_auto_mask)
    return (float(pairwise_masked_means(diff_img, kept, pairs.num_pairs).sum()),
            float(pairwise_masked_means(diff_depth, kept, pairs.num_pairs).sum()),
            float(ego_warp_valid.mean()), float(kept.mean()))


def variants(depths, ego, fields, scales=(0.1, 0.5, 2.0, 10.0)):
    """``{name: (depths, ego, fields)}``: the truth and the degenerate configurations of the module docstring."""
    h, w = depths.shape[-2:]

    def rigid(poses):
        return MotionField.rigid(poses, h, w)

    rotation_only = torch.cat([torch.zeros_like(ego[:, :3]), ego[:, 3:]], 1)
    cases = {'truth + objects': (depths, ego, fields), 'truth, rigid': (depths, ego, rigid(ego))}
    cases.update({f'depth x {s:g}': (depths * s, ego, rigid(ego)) for s in scales})
    flat = torch.full_like(depths, float(depths[depths < SKY_DEPTH].median()))
    cases.update({f'flat depth x {s:g}': (flat * s, ego, rigid(ego)) for s in (0.25, 1.0, 4.0)})
    cases['rotation only'] = (depths, rotation_only, rigid(rotation_only))
    cases['identity'] = (depths, torch.zeros_like(ego), rigid(torch.zeros_like(ego)))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--height', type=int, default=96)
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--scenes', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--depth-scales', type=float, nargs='+', default=[0.1, 0.5, 2.0, 10.0],
                        help='the factors s of the "depth x s" configurations')
    parser.add_argument('--no-auto-mask', action='store_true', help='evaluate without --with-auto-mask')
    args = parser.parse_args(argv)
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=not args.no_auto_mask)
    table = {}
    for index in args.scenes:
        scene = synthetic.render_scene(args.seed, index, args.height, args.width, frames=3, min_cars=2)
        pairs, depths, ego, fields = scene_inputs(scene)
        for name, case in variants(depths, ego, fields, args.depth_scales).items():
            table.setdefault(name, []).append(objective(pairs, *case, options))
    print(f"{'configuration':>16} {'photo':>8} {'geometry':>9} {'fwd valid':>10} {'kept':>6}   "
          f"(mean over {len(args.scenes)} scenes; auto-mask {'off' if args.no_auto_mask else 'on'})")
    for name, rows in table.items():
        photo, geometry, first_valid, kept = np.mean(rows, axis=0)
        print(f'{name:>16} {photo:8.4f} {geometry:9.4f} {first_valid:10.3f} {kept:6.3f}')
    return table


if __name__ == '__main__':
    main()
