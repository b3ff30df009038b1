"""Aggregate an ablation run of ``scripts/run_ablation.sh``: ``results.json``, ``results.md``, ``results.png``.

    python -m experiments.ablation_results --out OUT [--data VIS_ROOT] [--configs "full rigid no_mof no_obj_size"]
        [--metrics metrics.json] [--prefix results]

Reads ``OUT/runs/CONFIG/flags.txt`` (the training flags of the configuration) and, per seed,
``OUT/runs/CONFIG/seedS/METRICS`` (``--metrics``, default ``metrics.json``, written by
``experiments/eval_synthetic.py``; ``test/metrics.json`` for the held-out world of ``TEST_DATA``), the
``car_kinds.json`` beside it when there is one, and ``OUT/runs/CONFIG/seedS/run_dir.txt`` (the training
run folder).  Writes (``PREFIX`` = ``--prefix``, default ``results``)

* ``OUT/PREFIX.json``: ``{"configs": {NAME: {"flags", "seeds": {S: metrics}, "mean", "std", "steps",
  "train_seconds", "machines", "kinds"}}, "train_settings": {"text", "unrecorded"}}``, ``mean``/``std`` having
  the shape of metrics.json (over the seeds; the std is the population one, ddof 0; null where no seed has a
  number, the std also where only one has), ``steps``, ``train_seconds`` and ``machines`` per seed (the runner's
  ``steps.txt``, ``train_seconds.txt`` and ``machines.txt``), ``kinds`` ``{"mean", "std", "seeds"}`` of the
  seeds' car_kinds.json and the seeds that have one (null without any); ``train_settings`` the
  ``train_settings.txt`` every recorded seed shares (:mod:`experiments.run_record`; seeds trained with other
  settings are an error naming the file) and the ``CONFIG/seedS`` folders without one;
* ``OUT/PREFIX.md``: a table (mean +- std over seeds), the runs' training wall time, the bar of issue 18
  (moving-car Abs Rel of the full model at least 25 % below the rigid model's, background no more than 5 %
  worse) and, with car_kinds.json, the depth and object motion by car kind;
* ``OUT/PREFIX.png``: per-region Abs Rel of each configuration with its spread, and one validation frame
  (image, GT depth, the depth of each configuration's first seed) when ``--data`` is given.
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m experiments.ablation_results")

import numpy as np
import torch

from checkpoint_io import CheckpointError
from checkpoint_set import read_manifest
from data.synthetic import depth_to_colour
from datasets.io import DatasetError, read_image
from datasets.scenes import list_frames, read_scene_list
from datasets.validation_folders import read_depth
from demo import to_network_input
from experiments.eval_synthetic import EvalError, median_scale
from experiments.formatting import mean_and_spread, number
from experiments.run_record import RecordError, common_settings, read_machines, read_settings, seed_folders
from fileio import atomic_open
from models import ConfigError, depth_from_disparity, load_trained_networks

CONFIG_ORDER = ('full', 'rigid', 'no_mof', 'no_obj_size')
REGIONS = ('all', 'background', 'moving', 'parked')
MOVING_GAIN = 0.25
BACKGROUND_TOLERANCE = 0.05


def seed_spread(values):
    """The standard deviation of ``[n]`` values over seeds (population, ddof 0); None for one seed, which has
    no spread."""
    return np.std(values) if len(values) > 1 else None


def combine(values, reduce):
    """Apply ``reduce`` leaf-wise over a list of equally shaped nested dicts (None and missing leaves skipped; a
    leaf is None where ``reduce`` gives None)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if isinstance(present[0], dict):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: combine([v.get(k) for v in present], reduce) for k in keys}
    if isinstance(present[0], bool) or not isinstance(present[0], (int, float)):
        return present[0]
    reduced = reduce(np.asarray(present, float))
    return None if reduced is None else float(reduced)


def read_config(folder, metrics_name='metrics.json'):
    """``{"flags", "seeds": {seed: metrics}, "steps": {seed: n_iter}, "train_seconds": {seed: seconds},
    "machines": {seed: [line]}, "kinds": {seed: car_kinds}}`` of one configuration folder (``metrics_name``: the
    metrics file's path in a seed folder)."""
    flags_file = folder / 'flags.txt'
    seeds, steps, seconds, machines, kinds = {}, {}, {}, {}, {}
    for seed, seed_dir in seed_folders(folder):
        metrics = seed_dir / metrics_name
        if metrics.is_file():
            seeds[seed] = read_json(metrics)
            steps[seed] = training_steps(seed_dir)
            seconds[seed] = training_seconds(seed_dir)
            machines[seed] = read_machines(seed_dir)
            if (metrics.parent / 'car_kinds.json').is_file():
                kinds[seed] = read_json(metrics.parent / 'car_kinds.json')
    return {'flags': flags_file.read_text().strip() if flags_file.is_file() else '', 'seeds': seeds, 'steps': steps,
            'train_seconds': seconds, 'machines': machines, 'kinds': kinds}


def read_json(path):
    """The JSON object of ``path``; EvalError naming the file when it cannot be read or is not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise EvalError(f"{path}: not readable JSON ({type(error).__name__}: {error})") from None
    if not isinstance(value, dict):
        raise EvalError(f"{path}: not a JSON object (a {type(value).__name__})")
    return value


def read_count(path):
    """The non-negative integer a one-line runner file (``steps.txt``, ``train_seconds.txt``) holds; None when
    the file is missing or holds something else."""
    text = path.read_text().strip() if path.is_file() else ''
    return int(text) if text.isdigit() else None


def training_seconds(seed_dir):
    """The training wall time of a seed's run in seconds: the runner's ``train_seconds.txt`` (None without one,
    e.g. a run older than it)."""
    return read_count(seed_dir / 'train_seconds.txt')


def training_steps(seed_dir):
    """Iterations the seed's run trained: the runner's ``steps.txt``, else the run's checkpoint-set manifest
    (None when neither can be read, e.g. an older run whose checkpoints were deleted)."""
    steps = read_count(seed_dir / 'steps.txt')
    if steps is not None:
        return steps
    run_file = seed_dir / 'run_dir.txt'
    if not run_file.is_file():
        return None
    try:
        manifest = read_manifest(run_file.read_text().strip())
    except CheckpointError:
        return None
    return None if manifest is None else int(manifest['n_iter'])


def collect(out, configs=CONFIG_ORDER, metrics_name='metrics.json'):
    """The results.json dict of the finished seeds of ``configs`` under ``OUT/runs``: ``{"configs": {NAME:
    ...}, "train_settings": {"text", "unrecorded"}}``, the settings every recorded seed shares (RecordError
    naming a seed folder trained otherwise) and the ``CONFIG/seedS`` folders without a record."""
    results, settings = {}, {}
    for name in configs:
        folder = Path(out) / 'runs' / name
        if not folder.is_dir():
            continue
        config = read_config(folder, metrics_name)
        settings.update({folder / f'seed{seed}': read_settings(folder / f'seed{seed}') for seed in config['seeds']})
        seeds, kinds = list(config['seeds'].values()), list(config['kinds'].values())
        config['mean'] = combine(seeds, np.mean)
        config['std'] = combine(seeds, seed_spread)
        # the seeds' car_kinds.json, summarised like the metrics
        config['kinds'] = {'mean': combine(kinds, np.mean), 'std': combine(kinds, seed_spread),
                           'seeds': sorted(config['kinds'], key=int)} if kinds else None
        results[name] = config
    text, unrecorded = common_settings(settings)
    return {'configs': results, 'train_settings': {'text': text, 'unrecorded': [
        str(path.relative_to(Path(out) / 'runs')) for path in unrecorded]}}


def lookup(tree, *keys):
    """``tree[k1][k2]...`` of nested dicts, None where a level is missing or None."""
    for key in keys:
        if tree is None:
            return None
        tree = tree.get(key)
    return tree


def bar_values(full_metrics, rigid_metrics):
    """``[full moving, full background, rigid moving, rigid background]`` Abs Rel of two metrics dicts."""
    return [lookup(metrics, 'depth', region, 'abs_rel') for metrics in (full_metrics, rigid_metrics)
            for region in ('moving', 'background')]


def relative_changes(values):
    """``(moving-car gain, background change)`` of :func:`bar_values`: ``1 - full / rigid`` of the moving cars'
    Abs Rel and ``full / rigid - 1`` of the background's."""
    full_moving, full_bg, rigid_moving, rigid_bg = values
    return 1 - full_moving / rigid_moving, full_bg / rigid_bg - 1


def change_text(change, positive, negative):
    """``'x.x % POSITIVE'`` for a change >= 0, ``'x.x % NEGATIVE'`` below (e.g. lower / higher)."""
    return f'{100 * abs(change):.1f} % {positive if change >= 0 else negative}'


def paired_values(full, rigid):
    """``(values, keys)``: the :func:`bar_values` of the mean metrics over the keys (seeds, ...) both dicts of
    metrics have with every bar region, and those keys; ``(None, [])`` without such a key."""
    keys = [key for key in full if key in rigid and None not in bar_values(full[key], rigid[key])]
    if not keys:
        return None, []
    return bar_values(*(combine([metrics[key] for key in keys], np.mean) for metrics in (full, rigid))), keys


def _bar_line(label, values, detail=''):
    """One verdict line from :func:`bar_values`."""
    moving_gain, background_change = relative_changes(values)
    met = moving_gain >= MOVING_GAIN and background_change <= BACKGROUND_TOLERANCE
    return (f"{label}: moving-car Abs Rel {change_text(moving_gain, 'lower', 'higher')}{detail} (needs >= "
            f"{100 * MOVING_GAIN:.0f} %), background {change_text(-background_change, 'better', 'worse')} "
            f"(allowed: <= {100 * BACKGROUND_TOLERANCE:.0f} % worse): {'met' if met else 'NOT met'}.")


def bar_verdict(results):
    """The bar of issue 18, full against rigid: a line on the means over all seeds and, when both have seeds in
    common, a line on those seeds only (paired: the same seed, hence the same initialisation and batches)."""
    full, rigid = results['configs'].get('full'), results['configs'].get('rigid')
    values = bar_values(lookup(full, 'mean'), lookup(rigid, 'mean'))
    if None in values:
        return 'Bar (full vs rigid): cannot be judged (a configuration or a region is missing).'
    lines = [_bar_line('Bar (full vs rigid, all seeds)', values)]
    paired_means, paired = paired_values(full['seeds'], rigid['seeds'])
    if paired:
        gains = ', '.join(f"{100 * relative_changes(bar_values(full['seeds'][seed], rigid['seeds'][seed]))[0]:.0f} %"
                          for seed in paired)
        lines.append(_bar_line(f"Paired on seeds {', '.join(paired)}", paired_means, f' (per seed: {gains})'))
    return '\n\n'.join(lines)


def seed_names(seeds):
    """The seeds (numbers as strings) of a ``{seed: ...}`` dict or a set in numeric order, e.g. ``"0, 1, 2, 10"``
    (``none`` without one)."""
    return ', '.join(sorted(seeds, key=int)) or 'none'


def format_markdown(results, settings=''):
    """results.md: depth by region, ego and object motion (mean ± std over seeds), and the bar."""
    lines = ['# Ablation on the synthetic world', '']
    if settings:
        lines += [settings, '']
    lines += ['| config | flags | seeds | steps | Abs Rel all | background | moving | parked | ego ATE (m) '
              '| moving-car EPE (m) | moving within 30° |', '|' + '---|' * 11]
    for name, config in results['configs'].items():
        mean, std = config['mean'], config['std']
        steps = sorted({s for s in config['steps'].values() if s is not None})
        cells = [mean_and_spread(lookup(mean, 'depth', r, 'abs_rel'), lookup(std, 'depth', r, 'abs_rel'))
                 for r in REGIONS]
        cells += [mean_and_spread(lookup(mean, 'ego', 'ate'), lookup(std, 'ego', 'ate')),
                  mean_and_spread(lookup(mean, 'objects', 'moving', 'epe'), lookup(std, 'objects', 'moving', 'epe')),
                  mean_and_spread(lookup(mean, 'objects', 'moving', 'within_30deg'),
                                  lookup(std, 'objects', 'moving', 'within_30deg'), 2)]
        lines.append(f"| {name} | `{config['flags']}` | {seed_names(config['seeds'])} | "
                     f"{'/'.join(map(str, steps)) or 'n/a'} | " + ' | '.join(cells) + ' |')
    lines += ['', *training_time_lines(results), *settings_lines(results), bar_verdict(results), '']
    return '\n'.join(lines + format_kinds_markdown(results))


def settings_lines(results):
    """The lines of the seeds' recorded training settings and machines (empty when no seed has a record)."""
    settings = results.get('train_settings') or {}
    machines = {}
    for name, config in results['configs'].items():
        for seed, lines in (config.get('machines') or {}).items():
            for line in lines:
                machines.setdefault(line, []).append(f'{name} {seed}')
    lines = []
    if settings.get('text'):
        flags, world = (line.split(': ', 1)[1] for line in settings['text'].splitlines())
        unrecorded = settings.get('unrecorded') or []
        lines += [f"Training settings shared by every seed (train_settings.txt): flags `{flags}`; world `{world}`"
                  + (f" (not recorded for {', '.join(unrecorded)}: runs older than the record)" if unrecorded
                     else '') + '.', '']
    if machines:
        lines += ['Machines (machines.txt): ' + '; '.join(f"{', '.join(runs)}: `{line}`"
                                                           for line, runs in machines.items()) + '.', '']
    return lines


def training_time_lines(results):
    """The line of the runs' training wall time (minutes per seed; empty when no run has ``train_seconds.txt``)."""
    times = {name: config.get('train_seconds') or {} for name, config in results['configs'].items()}
    if not any(seconds is not None for by_seed in times.values() for seconds in by_seed.values()):
        return []
    parts = ['; '.join(f"seed {seed} {'n/a' if by_seed[seed] is None else round(by_seed[seed] / 60)}"
                       for seed in sorted(by_seed, key=int)) for by_seed in times.values()]
    return ['Training wall time (min; summed over resumes, alongside whatever shared the machine): '
            + ', '.join(f"{name}: {part}" for name, part in zip(times, parts) if part) + '.', '']


def format_kinds_markdown(results):
    """The lines of the by-kind table (empty when no configuration has car_kinds.json): per car kind, the
    Abs Rel, the signed ``log_ratio`` (> 0: drawn too far) and the object-motion end-point error."""
    kinds = [c['kinds'] for c in results['configs'].values() if c.get('kinds')]
    if not kinds:
        return []
    names = list(dict.fromkeys(k for c in kinds for k in c['mean']['depth']))
    lines = ['By car kind (Abs Rel / mean log(prediction / truth), > 0: drawn too far / object-motion EPE in m; '
             'mean over the seeds with car_kinds.json):', '',
             '| config | seeds | ' + ' | '.join(names) + ' |', '|' + '---|' * (len(names) + 2)]
    for name, config in results['configs'].items():
        if not config.get('kinds'):
            continue
        mean = config['kinds']['mean']
        cells = []
        for kind in names:
            depth = lookup(mean, 'depth', kind) or {}
            epe = lookup(mean, 'objects', kind, 'epe')
            cells.append(f"{number(depth.get('abs_rel'))} / {number(depth.get('log_ratio'))}"
                         + ('' if epe is None else f" / {number(epe)}"))
        lines.append(f"| {name} | {seed_names(config['kinds']['seeds'])} | " + ' | '.join(cells) + ' |')
    return lines + ['']


def load_validation_frame(data):
    """``(image [H,W,3] uint8, gt depth [H,W], path)`` of the middle frame of the first validation scene."""
    _, names = read_scene_list(data, train=False)
    frames = list_frames(Path(data) / 'image' / names[0])
    if not frames:
        raise EvalError(f"{Path(data) / 'image' / names[0]}: no frames (the first validation scene of --data)")
    frame = frames[len(frames) // 2]
    image = read_image(frame)
    return image, read_depth(frame.with_suffix('.npy'), image.shape[:2]), frame


def predict_depth(checkpoint, image):
    """``[H,W]`` depth of DispResNet ``checkpoint`` for one uint8 frame (on the CPU)."""
    nets, _ = load_trained_networks({'disp': checkpoint}, {}, torch.device('cpu'), log=lambda line: None)
    with torch.no_grad():
        return depth_from_disparity(nets['disp'](to_network_input(image, torch.device('cpu'))))[0, 0].numpy()


def config_depths(out, results, image, gt):
    """``{config: [H,W] depth}`` (median-scaled to ``gt``) of the first finished seed of each configuration."""
    depths = {}
    for name, config in results['configs'].items():
        for seed in config['seeds']:
            run_file = Path(out) / 'runs' / name / f'seed{seed}' / 'run_dir.txt'
            if not run_file.is_file():
                continue
            checkpoint = Path(run_file.read_text().strip()) / 'dispnet_checkpoint.pth.tar'
            if checkpoint.is_file():
                depth = predict_depth(checkpoint, image)
                depths[name] = depth * (median_scale(gt, depth) or 1.0)
                break
    return depths


def save_figure(path, results, frame=None, depths=None):
    """results.png: Abs Rel by region and configuration (error bars: std over seeds), and the frame row."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(results['configs'])
    columns = 2 + len(depths or {})
    rows = 2 if frame is not None else 1
    fig = plt.figure(figsize=(3.2 * max(columns, 3), 3.0 * rows))
    axis = fig.add_subplot(rows, 1, 1)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        config = results['configs'][name]
        means = [lookup(config['mean'], 'depth', r, 'abs_rel') for r in REGIONS]
        stds = [lookup(config['std'], 'depth', r, 'abs_rel') or 0.0 for r in REGIONS]
        axis.bar(np.arange(len(REGIONS)) + i * width, [np.nan if m is None else m for m in means], width,
                 yerr=stds, capsize=3, label=name)
    axis.set_xticks(np.arange(len(REGIONS)) + width * (len(names) - 1) / 2, REGIONS)
    axis.set_ylabel('Abs Rel (mean ± std over seeds)')
    axis.legend(fontsize=8)
    if frame is not None:
        image, gt = frame
        nearest = float(gt[gt > 0].min()) if (gt > 0).any() else 1.0    # one colour scale: the GT's
        panels = [('image', image), ('GT depth', depth_to_colour(gt, 1 / nearest))]
        panels += [(name, depth_to_colour(depth, 1 / nearest)) for name, depth in (depths or {}).items()]
        for j, (title, picture) in enumerate(panels):
            ax = fig.add_subplot(rows, columns, columns + j + 1)
            ax.imshow(picture)
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format='png', dpi=100)
    plt.close(fig)


def write_results(out, data=None, configs=CONFIG_ORDER, settings='', metrics_name='metrics.json', prefix='results'):
    """Write PREFIX.json, PREFIX.md and PREFIX.png under ``out``; returns the results dict."""
    out = Path(out)
    results = collect(out, configs, metrics_name)
    with atomic_open(out / f'{prefix}.json') as handle:
        handle.write(json.dumps(results, indent=1).encode())
    with atomic_open(out / f'{prefix}.md') as handle:
        handle.write(format_markdown(results, settings).encode())
    frame, depths = None, None
    if data is not None:
        image, gt, _ = load_validation_frame(data)
        frame, depths = (image, gt), config_depths(out, results, image, gt)
    save_figure(out / f'{prefix}.png', results, frame, depths)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, type=Path, help='the OUT folder of run_ablation.sh')
    parser.add_argument('--data', type=Path, default=None, help='the synthetic KITTI-VIS folder (for the frame row)')
    parser.add_argument('--configs', default=' '.join(CONFIG_ORDER), help='configurations, in table order')
    parser.add_argument('--settings', default='', help='a line describing the run (steps, size, seeds, wall time)')
    parser.add_argument('--metrics', default='metrics.json',
                        help="the metrics file's path in a seed folder (test/metrics.json: the held-out world)")
    parser.add_argument('--prefix', default='results', help='names of the outputs: OUT/PREFIX.{json,md,png}')
    args = parser.parse_args(argv)
    if not (args.out / 'runs').is_dir():
        print(f"error: {args.out / 'runs'}: not found (run scripts/run_ablation.sh first)", file=sys.stderr)
        return 2
    try:
        results = write_results(args.out, args.data, args.configs.split(), args.settings, args.metrics, args.prefix)
    except (EvalError, RecordError, DatasetError, CheckpointError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_markdown(results, args.settings))
    return 0


if __name__ == '__main__':
    sys.exit(main())
