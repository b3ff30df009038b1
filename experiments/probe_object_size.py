"""Does the object-size term fight the photometric term?  Scale agreement and gradient conflict of trained runs.

    python -m experiments.probe_object_size --runs OUT/runs [--configs full rigid no_mof no_obj_size]
        [--seeds 0 1] [--data VIS_ROOT] [--batches 4] [--output-dir DIR]

A diagnostic of issue 18.  In the ablation the two configurations with the object-size term (``full``,
``no_mof``) have the best moving-car depth and the worst background, the two without it the reverse.  The
term asks each car's mean depth to be ``f_y * h_prior / h_pixels`` (``loss_functions.object_size_errors``):
an absolute unit of depth, ``car height / h_prior`` metres per network unit, while the photometric term asks
for the unit of EgoPoseNet's translations.  This probe measures, for every saved checkpoint of the ablation's
runs (``OUT/runs/CONFIG/seedS``, the run folder named in ``run_dir.txt``):

**Units** (validation scenes, ``demo.run_networks``: the code path of ``experiments.eval_synthetic``), each the
median over images or pairs, in metres per network depth unit:

* ``bg_unit``: ``median(gt) / median(pred)`` on the background pixels of an image;
* ``car_unit``: the same on the moving-car pixels (images with at least 50 of them); ``car_vs_bg`` is
  ``car_unit / bg_unit``: 1 when cars and background share one scale, above 1 when the cars are drawn too close;
* ``bg_contrast``: ``std(log pred) / std(log gt)`` on the background pixels of an image: below 1 when the
  depth map flattens the street, above 1 when it exaggerates it;
* ``road_abs_rel``, ``upper_abs_rel``: Abs Rel (the evaluation's per-image median scaling) of the background
  below the principal point's row (the street) and above it (buildings); ``road_far``, ``road_near``: median of
  scaled prediction / truth on the farthest and the nearest third of the street's rows (1: right; a flattened
  street has ``road_near`` above 1 and ``road_far`` below it);
* ``pose_unit``: GT camera translation / EgoPoseNet translation of consecutive frames; ``pose_vs_bg`` is
  ``pose_unit / bg_unit``: 1 when the depth fits the ego translation, above 1 when it is too far for it;
* ``size_unit``: for each visible car, its GT mean depth / the depth the object-size term asks for,
  ``f_y * h_prior / rows`` (``h_prior`` the run's learned height prior): the unit the term pulls the cars to.

**Pull** (training batches of the ablation's folder, no augmentation, ``projection.run_step`` with the run's
loss options and the object-size weight 0.02 even where the run trained without it):

* ``d_<term>``: derivative of the weighted term with respect to ``log`` of a global depth scale applied
  inside the step (the ego translation fixed): positive when the term wants the depth maps nearer, negative
  when it wants them farther;
* ``car_pixels_agree``: share of the object-size term's gradient on the depth maps (weighted by its size per
  pixel; only car pixels have one) whose sign the other terms' gradient shares: below 0.5 when the terms
  push the cars' depth in opposite directions;
* ``cos_size_rest``: cosine between the gradients of the weighted object-size term and of all the other terms
  with respect to DispResNet's weights (the height prior excluded): below 0 when they pull the network apart;
  ``size_rest_ratio`` the ratio of their norms.

Writes ``DIR/results.json`` and ``DIR/results.md`` (default ``experiments/results/probes/object_size``) after every\ncheckpoint; run again, it keeps the rows there and measures only the missing ones.
"""
import argparse
import importlib.util
import json
import platform
import sys
import time
from argparse import Namespace
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as "
             f"python -m experiments.probe_object_size")

import numpy as np
import torch

import demo
from datasets.io import read_segmentation
from datasets.scenes import read_scene_list
from datasets.validation_folders import read_depth
from experiments import motion_metrics
from experiments.eval_synthetic import (MAX_DEPTH, MIN_DEPTH, MIN_REGION_PIXELS, EvalError, ScaledDisparity,
                                        median_scale, print_warning, read_scene_truth, region_errors, region_masks,
                                        road_and_upper)
from experiments.formatting import number
from experiments.probe_object_input import load_batch, training_samples
from fileio import atomic_open
from loss_functions import expected_object_depths
from models import build_networks, imagenet_initialisation, load_trained_networks
from projection import LossOptions, run_step, unwrap
from train_model import model_config

DEFAULT_OUTPUT = Path('experiments/results/probes/object_size')
PROBE_OBJ_SIZE_WEIGHT = 0.02
NETWORK_FILES = {'disp': 'dispnet', 'ego': 'ego_pose', 'obj': 'obj_pose'}
PULL_TERMS = ('photo', 'geometry', 'smooth', 'obj_size', 'mof_consistency')
UNIT_KEYS = ('height_prior', 'bg_unit', 'car_unit', 'car_vs_bg', 'bg_contrast', 'road_abs_rel', 'upper_abs_rel',
             'road_far', 'road_near', 'pose_unit', 'size_unit')


def checkpoint_labels(run_dir):
    """Labels of a run folder's networks in training order: ``['init', 'ep003', ..., 'last']`` (``init``: a fresh
    random initialisation)."""
    kept = sorted(p.name[len('dispnet_checkpoint_'):-len('.pth.tar')]
                  for p in Path(run_dir).glob('dispnet_checkpoint_ep*.pth.tar'))
    return ['init'] + kept + ['last']


def checkpoint_paths(run_dir, label):
    """``{'disp', 'ego', 'obj'}`` -> checkpoint path of one label of :func:`checkpoint_labels`."""
    suffix = '' if label == 'last' else f'_{label}'
    return {net: Path(run_dir) / f'{name}_checkpoint{suffix}.pth.tar' for net, name in NETWORK_FILES.items()}


def load_networks(run_dir, label, run_args, device=torch.device('cpu')):
    """``(demo.Networks for inference, raw {'disp','ego','obj'} networks, ModelConfig)`` of one checkpoint, on
    ``device``; ``init``: a random initialisation as train.py builds it, seeded with the run's seed."""
    if label == 'init':
        torch.manual_seed(run_args['seed'])
        config = model_config(Namespace(**run_args))
        nets = {name: net.to(device) for name, net in build_networks(config, imagenet_initialisation(0, None)).items()}
    else:
        nets, config = load_trained_networks(checkpoint_paths(run_dir, label), {}, device, log=print_warning)
    disp = nets['disp'] if config.depth_scale == 1 else ScaledDisparity(nets['disp'], config.depth_scale)
    inference = demo.Networks(disp, nets['ego'], nets['obj'], config.rotation_mode, config.antisymmetric_ego_pose)
    return inference, nets, config


def unit_ratio(gt, pred, mask, min_pixels=MIN_REGION_PIXELS):
    """``median(gt) / median(pred)`` over the pixels of ``mask`` with GT depth (None below ``min_pixels``)."""
    valid = mask & (gt > 0)
    if valid.sum() < min_pixels:
        return None
    return float(np.median(gt[valid]) / np.median(pred[valid]))


def street_band_ratios(gt, pred, street, min_pixels=MIN_REGION_PIXELS):
    """``(far, near)``: median of ``scaled pred / gt`` over the farthest and the nearest third of the street's
    rows (the prediction median-scaled on all valid pixels, as the evaluation does); 1 where the street is
    right, above 1 where it is drawn too far.  ``None`` for a band with fewer than ``min_pixels // 3`` pixels."""
    scale = median_scale(gt, pred)
    valid = street & (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
    rows = np.nonzero(valid.any(axis=1))[0]
    if scale is None or len(rows) < 3:
        return None, None
    ratios = []
    for band in (rows[:len(rows) // 3], rows[-(len(rows) // 3):]):
        mask = valid & np.isin(np.arange(gt.shape[0]), band)[:, None]
        ratios.append(float(np.median(pred[mask] * scale / gt[mask])) if mask.sum() >= min_pixels // 3 else None)
    return tuple(ratios)


def log_contrast(gt, pred, mask, min_pixels=MIN_REGION_PIXELS):
    """``std(log pred) / std(log gt)`` over the pixels of ``mask`` with GT depth: below 1 when the prediction
    flattens the region's depth, above 1 when it exaggerates it (None below ``min_pixels``)."""
    valid = mask & (gt > 0)
    if valid.sum() < min_pixels:
        return None
    spread = np.log(gt[valid]).std()
    return float(np.log(pred[valid]).std() / spread) if spread > 0 else None


def car_size_units(gt, segmentation, objects, frame, fy, height_prior, min_pixels=MIN_REGION_PIXELS):
    """``size_unit`` of every car with at least ``min_pixels`` GT pixels in a frame: GT mean depth / the depth
    the object size term asks for (``loss_functions.expected_object_depths``)."""
    units = []
    for obj in objects:
        channel = obj['mask_index'][frame]
        if channel < 1:
            continue
        mask = (segmentation[channel] > 0) & (gt > 0)
        if mask.sum() < min_pixels:
            continue
        car = torch.from_numpy(segmentation[channel] > 0)[None, None].float()
        expected = float(expected_object_depths(car, torch.tensor([fy]), height_prior)[0, 0])
        units.append(float(gt[mask].mean() / expected))
    return units


def scene_units(root, name, nets, mni, height_prior):
    """Lists of the :data:`UNIT_KEYS` values (but the height prior) of one validation scene."""
    scene = demo.find_scene(root, name)
    truth = read_scene_truth(root, name)
    frame_hw = demo.read_frame(scene.frames[0]).shape[:2]
    inference = demo.run_networks(scene, nets, mni, torch.device('cpu'))
    fy = float(scene.intrinsics[1, 1])
    units = {key: [] for key in UNIT_KEYS if key != 'height_prior'}
    for k, (frame, seg_path) in enumerate(zip(scene.frames, scene.segmentations)):
        gt = read_depth(frame.with_suffix('.npy'), frame_hw)
        segmentation = read_segmentation(seg_path, frame_hw)
        regions = region_masks(segmentation, truth['objects'], k)
        bg, car = unit_ratio(gt, inference.depths[k], regions['background']), \
            unit_ratio(gt, inference.depths[k], regions['moving'])
        units['bg_unit'] += [bg] if bg is not None else []
        units['car_unit'] += [car] if car is not None else []
        units['car_vs_bg'] += [car / bg] if car is not None and bg is not None else []
        contrast = log_contrast(gt, inference.depths[k], regions['background'])
        units['bg_contrast'] += [contrast] if contrast is not None else []
        split = road_and_upper(regions['background'], scene.intrinsics)
        for name, region in region_errors(gt, inference.depths[k], split).items():
            units[f'{name}_abs_rel'].append(region.errors.abs_rel)
        for name, ratio in zip(('road_far', 'road_near'), street_band_ratios(gt, inference.depths[k], split['road'])):
            units[name] += [ratio] if ratio is not None else []
        units['size_unit'] += car_size_units(gt, segmentation, truth['objects'], k, fy, height_prior)
    gt_poses = motion_metrics.relative_gt_poses(truth['cam_to_world'])
    for pred, gt in zip(inference.poses, gt_poses):
        pred_norm = float(np.linalg.norm(pred[:3]))
        if pred_norm > 0:
            units['pose_unit'].append(float(np.linalg.norm(gt[:3, 3])) / pred_norm)
    return units


def validation_units(root, nets, mni, height_prior):
    """The medians of :func:`scene_units` over the validation scenes of ``root`` (None for an empty list)."""
    _, names = read_scene_list(root, train=False)
    pooled = {}
    for name in names:
        for key, values in scene_units(root, name, nets, mni, height_prior).items():
            pooled.setdefault(key, []).extend(values)
    return {key: float(np.median(values)) if values else None for key, values in pooled.items()}


def probe_options(run_args):
    """The run's :class:`LossOptions` with the object-size weight of the full model (computed for every run)."""
    options = LossOptions.from_args(Namespace(**run_args))
    options.obj_size = PROBE_OBJ_SIZE_WEIGHT
    return options


def flat_gradient(term, params):
    """The gradient of a scalar ``term`` w.r.t. ``params`` as one vector (zeros where it does not reach)."""
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def scale_derivative(term, log_scale):
    """``d term / d log_scale`` (0 where the term does not depend on the depth scale)."""
    if not term.requires_grad:
        return 0.0
    grad = torch.autograd.grad(term, log_scale, retain_graph=True, allow_unused=True)[0]
    return 0.0 if grad is None else float(grad)


def pixel_agreement(size_term, rest, depths):
    """Share of the object-size term's pull on the depth maps ``[N,1,H,W]`` (weighted by its size per pixel)
    that the other terms' gradient shares in sign: 1 when they push every car pixel the same way, 0 when
    they push every one the opposite way (None without an instance)."""
    size_grad = flat_gradient(size_term, [depths])
    rest_grad = flat_gradient(rest, [depths])
    weight = size_grad.abs()
    if weight.sum() == 0:
        return None
    return float((weight * (torch.sign(size_grad) == torch.sign(rest_grad))).sum() / weight.sum())


def batch_pull(nets, options, batch):
    """``d_<term>`` (scale derivatives), ``cos_size_rest`` and ``size_rest_ratio`` of one training batch."""
    tgt, refs, K, tgt_insts, ref_insts = batch
    log_scale = torch.zeros((), requires_grad=True)
    scaled = LossOptions(**{**vars(options), 'depth_scale': options.depth_scale * torch.exp(log_scale)})
    outputs = run_step(nets['disp'], nets['ego'], nets['obj'], tgt, refs, K, tgt_insts, ref_insts, scaled)
    weighted = {name: outputs.losses[name] * getattr(options, name) for name in PULL_TERMS}
    record = {f'd_{name}': scale_derivative(term, log_scale) for name, term in weighted.items()}
    rest = sum(term for name, term in weighted.items() if name != 'obj_size')
    record['car_pixels_agree'] = pixel_agreement(weighted['obj_size'], rest, outputs.depths)
    disp = unwrap(nets['disp'])
    params = [p for name, p in disp.named_parameters() if name != 'obj_height_prior']
    size_grad = flat_gradient(weighted['obj_size'], params)
    rest_grad = flat_gradient(rest, params)
    norms = size_grad.norm() * rest_grad.norm()
    record['cos_size_rest'] = float(size_grad @ rest_grad / norms) if norms > 0 else None
    record['size_rest_ratio'] = float(size_grad.norm() / rest_grad.norm()) if rest_grad.norm() > 0 else None
    return record


def training_batches(root, run_args, count, batch_size):
    """The first ``count`` batches (seed 0 order) of the run's training samples without augmentation
    (``probe_object_input``'s samples and collation)."""
    dataset = training_samples(root, Namespace(seed=0, mni=run_args['mni']))
    order = np.random.default_rng(0).permutation(len(dataset))
    for start in range(0, min(count * batch_size, len(order)), batch_size):
        yield load_batch(dataset, [int(i) for i in order[start:start + batch_size]])


def mean_records(records):
    """Per-key mean of a list of dicts (None values skipped; None when a key has none)."""
    keys = records[0].keys() if records else ()
    return {key: float(np.mean([r[key] for r in records if r[key] is not None]))
            if any(r[key] is not None for r in records) else None for key in keys}


def probe_checkpoint(run_dir, label, root, run_args, num_batches):
    """One checkpoint's row values: the validation part (height prior, units, contrast, street) and, with
    ``num_batches`` > 0, the terms' pull on that many training batches.

    The validation part comes first, in evaluation mode, so that the pull's training-mode passes (which
    update BatchNorm's running statistics) cannot change it.
    """
    inference, nets, _ = load_networks(run_dir, label, run_args)
    for net in nets.values():
        net.eval()
    height_prior = float(unwrap(nets['disp']).obj_height_prior.detach())
    with torch.no_grad():
        values = {'height_prior': height_prior, **validation_units(root, inference, run_args['mni'], height_prior)}
    if num_batches > 0:
        for net in nets.values():
            net.train()
        options = probe_options(run_args)
        batches = list(training_batches(root, run_args, num_batches, run_args['batch_size']))
        values.update(mean_records([batch_pull(nets, options, batch) for batch in batches]), batches=len(batches))
    return values


def run_folder(runs, config, seed, pruned_ok=False):
    """The train.py run folder of ``RUNS/CONFIG/seedS`` (named in its ``run_dir.txt``); with ``pruned_ok``, None
    when that folder is gone (the runner's ``PRUNE=1`` deleted the checkpoints)."""
    pointer = Path(runs) / config / f'seed{seed}' / 'run_dir.txt'
    if not pointer.is_file():
        raise EvalError(f"{pointer}: not found (is --runs the runs/ folder of scripts/run_ablation.sh?)")
    run_dir = Path(pointer.read_text().strip())
    if pruned_ok and not run_dir.exists():
        return None
    if not (run_dir / 'args.json').is_file():
        raise EvalError(f"{run_dir / 'args.json'}: not found (the run folder named in {pointer})")
    return run_dir


def read_run_args(run_dir, keys=('mni', 'seed')):
    """The ``args.json`` dict of a train.py run folder; EvalError naming the file when it cannot be read or lacks
    one of ``keys``."""
    path = Path(run_dir) / 'args.json'
    try:
        run_args = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EvalError(f"{path}: not a readable train.py args.json ({type(error).__name__}: {error})") from None
    missing = [key for key in keys if key not in run_args] if isinstance(run_args, dict) else list(keys)
    if missing:
        raise EvalError(f"{path}: no {', '.join(missing)} (not the args.json of a train.py run)")
    return run_args


def pose_vs_bg(row):
    """``pose_unit / bg_unit``: 1 when the depth fits EgoPoseNet's translation, above 1 when the depth is too far
    for it (the photometric term then pulls the depth nearer)."""
    if row.get('pose_unit') is None or not row.get('bg_unit'):
        return None
    return row['pose_unit'] / row['bg_unit']


COLUMNS = (('height_prior', 4), ('size_unit', 1), ('pose_unit', 1), ('bg_unit', 1), ('car_unit', 1),
           ('car_vs_bg', 2), ('bg_contrast', 2), ('road_abs_rel', 3), ('upper_abs_rel', 3),
           ('road_far', 2), ('road_near', 2), ('pose_vs_bg', 2), ('d_photo', 3), ('d_geometry', 3), ('d_obj_size', 3),
           ('d_mof_consistency', 4), ('car_pixels_agree', 2), ('cos_size_rest', 3), ('size_rest_ratio', 3))


def results_table(rows):
    """Markdown table of the probe's rows."""
    header = '| config | seed | checkpoint | ' + ' | '.join(name for name, _ in COLUMNS) + ' |'
    lines = [header, '|' + '---|' * (3 + len(COLUMNS))]
    for row in rows:
        values = {**row, 'pose_vs_bg': pose_vs_bg(row)}
        cells = [row['config'], str(row['seed']), row['checkpoint']] + [number(values.get(name), d)
                                                                          for name, d in COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def read_results(out):
    """``(rows, commands, seconds)`` of an earlier run of the probe into ``out`` (empty without one)."""
    path = out / 'results.json'
    if not path.is_file():
        return [], [], 0.0
    try:
        saved = json.loads(path.read_text())
        return saved['rows'], saved.get('commands') or [saved['command']], float(saved['seconds'])
    except (ValueError, KeyError, TypeError) as error:
        raise EvalError(f"{path}: not a results file of this probe ({type(error).__name__}: {error}); "
                        f"move it away or give another --output-dir") from None


def write_results(out, rows, commands, seconds):
    """``out/results.json`` (rows, commands, seconds, host) and ``out/results.md`` (the table), atomically."""
    summary = {'commands': commands, 'seconds': seconds, 'host': platform.processor() or platform.machine(),
               'rows': rows}
    with atomic_open(out / 'results.json') as handle:
        handle.write(json.dumps(summary, indent=1).encode())
    listed = '\n'.join(f'    {command}' for command in commands)
    text = (f"# Object-size term against the photometric term\n\nCommands ({seconds / 60:.0f} min in all, "
            f"{torch.get_num_threads()} thread(s)):\n\n{listed}\n\nUnits in metres per network depth unit "
            f"(medians over the validation images or pairs); d_* per log depth scale, averaged over the training "
            f"batches; see the docstring of experiments/probe_object_size.py.\n\n{results_table(rows)}\n")
    with atomic_open(out / 'results.md') as handle:
        handle.write(text.encode())


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', required=True, type=Path, help='the runs/ folder of scripts/run_ablation.sh')
    parser.add_argument('--configs', nargs='+', default=['full', 'rigid', 'no_mof', 'no_obj_size'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument('--checkpoints', nargs='+', default=None,
                        help='checkpoint labels (init, ep003 ... last; default: all of them)')
    parser.add_argument('--data', type=Path, default=None,
                        help="the ablation's KITTI-VIS folder (default: the runs' own, from args.json)")
    parser.add_argument('--batches', type=int, default=4, help='training batches per checkpoint for the pull')
    parser.add_argument('--output-dir', type=Path, default=DEFAULT_OUTPUT,
                        help='results go here; rows already in its results.json are kept (a row that lacks a '
                             'validation column gets it added) and not measured again')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = 'python -m experiments.probe_object_size ' + ' '.join(sys.argv[1:] if argv is None else argv)
    try:
        rows, commands, seconds = read_results(args.output_dir)
        done = {(row['config'], row['seed'], row['checkpoint']): row for row in rows}
        commands, start = commands + [command], time.time()
        for config in args.configs:
            for seed in args.seeds:
                run_dir = run_folder(args.runs, config, seed)
                run_args = read_run_args(run_dir, ('mni', 'seed', 'batch_size') + (() if args.data else ('data',)))
                root = args.data or Path(run_args['data'])
                for label in args.checkpoints or checkpoint_labels(run_dir):
                    row = done.get((config, seed, label))
                    if row is not None and all(key in row for key in UNIT_KEYS):
                        continue
                    if row is None:
                        row = {'config': config, 'seed': seed, 'checkpoint': label}
                        rows.append(row)
                        row.update(probe_checkpoint(run_dir, label, root, run_args, args.batches))
                    else:   # only the validation columns are missing: keep the row's pull
                        row.update(probe_checkpoint(run_dir, label, root, run_args, 0))
                    print(results_table([row]).splitlines()[-1], flush=True)
                    write_results(args.output_dir, rows, commands, seconds + time.time() - start)
    except (EvalError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(results_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
