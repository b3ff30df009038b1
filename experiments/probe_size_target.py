"""Does the object-size term ask for the right *shape* of depth, and where does it pull the cars of trained runs?

    python -m experiments.probe_size_target --data VIS_ROOT [--runs OUT/runs --configs full rigid
        --seeds 0 1 --checkpoints init last] [--output-dir DIR]

A diagnostic of issue 18 (the object-size probe found that the term keeps the street flat).  The term asks a
car's mean depth to be ``f_y * h_prior / h`` (``loss_functions.expected_object_depths``; ``h`` the rows its
mask covers), so it asks for depths proportional to the truth only if the height ``d * h / f_y`` that makes a
car of true mean depth ``d`` fit is the same at every distance.

**Target** (the world alone): ``VIS_ROOT``'s world is rendered again in memory from its
``synthetic_config.json`` (GT depth of every frame, training scenes included).  For every visible car with at
least :data:`MIN_CAR_PIXELS` pixels: ``d`` its mean GT depth over its mask, and the fitting height with the
two pixel heights, ``rows`` (rows covered: ours) and ``span`` (max - min row: the official code's).  Per
distance band: the median fitting height and the count.  A height that grows with distance means the term asks
far cars to be nearer than the truth (relative to near cars), one that shrinks the reverse.

**Pull** (with ``--runs``, the ``runs/`` folder of ``scripts/run_ablation.sh``): for each checkpoint, on the
validation scenes (the networks as ``experiments.eval_synthetic`` runs them), each visible car's predicted
mean depth over its mask over the depth the term asks with the checkpoint's learned height prior.  Above 1 the
term pulls the car nearer, below 1 farther; a ratio that falls with distance means the map is flatter than
the term asks and the term pulls it steeper.  Per distance band: the median ratio and the count.

Writes ``DIR/results.json`` and ``DIR/results.md`` (default ``experiments/results/probes/size_target``).
"""
import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as "
             f"python -m experiments.probe_size_target")

import numpy as np
import torch

import demo
from data import synthetic
from datasets.io import read_segmentation
from datasets.scenes import read_scene_list
from datasets.validation_folders import read_depth
from experiments.eval_synthetic import EvalError
from experiments.formatting import number
from experiments.probe_object_size import checkpoint_labels, load_networks, read_run_args, run_folder
from fileio import atomic_open
from loss_functions import expected_object_depths

DEFAULT_OUTPUT = Path('experiments/results/probes/size_target')
DISTANCE_BANDS = ((0, 10), (10, 20), (20, 35), (35, 80))
MIN_CAR_PIXELS = 20


def pixel_heights(mask):
    """``(rows, span)`` of a boolean ``[H,W]`` car mask: rows covered (ours) and max - min row (official)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    return len(rows), int(rows.max() - rows.min())


def band_of(depth):
    """Index of the :data:`DISTANCE_BANDS` band holding ``depth`` metres (None beyond the last)."""
    for k, (near, far) in enumerate(DISTANCE_BANDS):
        if near <= depth < far:
            return k
    return None


def band_medians(records):
    """``records``: ``(depth, value)`` pairs -> per band ``{'band': 'a-b m', 'median', 'count'}``."""
    rows = []
    for k, (near, far) in enumerate(DISTANCE_BANDS):
        values = [value for depth, value in records if band_of(depth) == k]
        rows.append({'band': f'{near}-{far} m', 'median': float(np.median(values)) if values else None,
                     'count': len(values)})
    return rows


def car_masks(masks, min_pixels=MIN_CAR_PIXELS):
    """The boolean car masks of one frame's ``[1+N,H,W]`` segmentation with at least ``min_pixels`` pixels."""
    return [mask > 0 for mask in masks[1:] if (mask > 0).sum() >= min_pixels]


def fitting_heights(depth, masks, fy):
    """``[(d, rows height, span height)]`` for the cars of one frame: GT ``depth`` ``[H,W]`` metres."""
    heights = []
    for mask in car_masks(masks):
        valid = mask & (depth > 0)
        if not valid.any():
            continue
        d = float(depth[valid].mean())
        rows, span = pixel_heights(mask)
        heights.append((d, d * rows / fy, d * span / fy))
    return heights


def world_config(root):
    """``synthetic_config.json`` of a KITTI-VIS folder written by ``python -m data.synthetic``."""
    path = Path(root) / synthetic.CONFIG_FILE
    if not path.is_file():
        raise EvalError(f"{path}: not found (--data must be a folder written by python -m data.synthetic)")
    return json.loads(path.read_text())


def target_table(root):
    """Per distance band, the median fitting height with the ``rows`` and the ``span`` pixel heights."""
    records = []
    for scene in synthetic.render_world(world_config(root), with_flows=False):
        for depth, masks in zip(scene.depths, scene.masks):
            records += fitting_heights(depth, masks, float(scene.K[1, 1]))
    by_rows = band_medians([(d, rows) for d, rows, _ in records])
    by_span = band_medians([(d, span) for d, _, span in records])
    return [{'band': r['band'], 'cars': r['count'], 'height_rows': r['median'], 'height_span': s['median']}
            for r, s in zip(by_rows, by_span)]


def pull_ratios(pred, gt, masks, fy, height_prior):
    """``[(GT mean depth, predicted mean depth / the term's depth)]`` for the cars of one frame."""
    ratios = []
    for mask in car_masks(masks):
        valid = mask & (gt > 0)
        if not valid.any():
            continue
        asked = float(expected_object_depths(torch.from_numpy(mask)[None, None].float(), torch.tensor([fy]),
                                             height_prior)[0, 0])
        ratios.append((float(gt[valid].mean()), float(pred[mask].mean()) / asked))
    return ratios


def checkpoint_pull(root, inference, mni, height_prior):
    """Per distance band, the median pull ratio of the validation scenes' cars under one checkpoint."""
    records = []
    for name in read_scene_list(root, train=False)[1]:
        scene = demo.find_scene(root, name)
        frame_hw = demo.read_frame(scene.frames[0]).shape[:2]
        with torch.no_grad():
            depths = demo.run_networks(scene, inference, mni, torch.device('cpu')).depths
        for frame, seg_path, pred in zip(scene.frames, scene.segmentations, depths):
            gt = read_depth(frame.with_suffix('.npy'), frame_hw)
            records += pull_ratios(pred, gt, read_segmentation(seg_path, frame_hw), float(scene.intrinsics[1, 1]),
                                   height_prior)
    return band_medians(records)


def pull_rows(args):
    """One row per configuration, seed and checkpoint: its height prior and band medians."""
    rows = []
    for config in args.configs:
        for seed in args.seeds:
            run_dir = run_folder(args.runs, config, seed)
            run_args = read_run_args(run_dir)
            for label in args.checkpoints or checkpoint_labels(run_dir):
                inference, nets, _ = load_networks(run_dir, label, run_args)
                for net in nets.values():
                    net.eval()
                height_prior = float(nets['disp'].obj_height_prior.detach())
                rows.append({'config': config, 'seed': seed, 'checkpoint': label, 'height_prior': height_prior,
                             'bands': checkpoint_pull(args.data, inference, run_args['mni'], height_prior)})
                print(f"{config} seed {seed} {label}: done", flush=True)
    return rows


def results_markdown(results):
    bands = [f"{near}-{far} m" for near, far in DISTANCE_BANDS]
    lines = ['# Object-size target and pull by distance', '', f"Command ({results['seconds']:.0f} s):", '',
             f"    {results['command']}", '',
             '## Target: the height that makes a car of true depth d fit, d * h / f_y (m)', '',
             '| pixel height h | ' + ' | '.join(bands) + ' |', '|---|' + '---|' * len(bands)]
    for key, label in (('height_rows', 'rows covered (ours)'), ('height_span', 'max - min row (official)')):
        lines.append(f'| {label} | ' + ' | '.join(number(r[key], 2) for r in results['target']) + ' |')
    lines.append('| cars | ' + ' | '.join(str(r['cars']) for r in results['target']) + ' |')
    if results['pull']:
        lines += ['', '## Pull: predicted car depth / the depth the term asks (median; above 1: pulled nearer)', '',
                  '| config | seed | checkpoint | height prior | ' + ' | '.join(bands) + ' |',
                  '|---|---|---|---|' + '---|' * len(bands)]
        for row in results['pull']:
            cells = [f"{number(b['median'], 2)} ({b['count']})" for b in row['bands']]
            lines.append(f"| {row['config']} | {row['seed']} | {row['checkpoint']} | {row['height_prior']:.4f} | "
                         + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True, type=Path, help='KITTI-VIS folder written by python -m data.synthetic')
    parser.add_argument('--runs', type=Path, default=None, help='the runs/ folder of scripts/run_ablation.sh')
    parser.add_argument('--configs', nargs='+', default=['full', 'rigid'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--checkpoints', nargs='+', default=None,
                        help='checkpoint labels (init, ep003 ... last; default: all of them)')
    parser.add_argument('--output-dir', type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = 'python -m experiments.probe_size_target ' + ' '.join(sys.argv[1:] if argv is None else argv)
    start = time.time()
    try:
        results = {'command': command, 'target': target_table(args.data),
                   'pull': pull_rows(args) if args.runs else []}
    except (EvalError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results['seconds'] = time.time() - start
    with atomic_open(args.output_dir / 'results.json') as handle:
        handle.write(json.dumps(results, indent=1).encode())
    with atomic_open(args.output_dir / 'results.md') as handle:
        handle.write(results_markdown(results).encode())
    print(results_markdown(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
