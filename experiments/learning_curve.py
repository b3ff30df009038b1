"""Depth by region and object motion along training: the ablation's kept checkpoints, evaluated one by one.

    python -m experiments.learning_curve --runs OUT/runs --data VIS_ROOT [--configs full rigid] [--seeds 0 1]
        [--every 300] [--windows FIRST-LAST ...] [--device auto] --output-dir DIR

A diagnostic of issue 18: does the full model's lead over the rigid one on moving cars grow with the training
budget?  For every run of ``scripts/run_ablation.sh`` (``OUT/runs/CONFIG/seedS``, the run folder named in its
``run_dir.txt``) it evaluates, with ``experiments.eval_synthetic.evaluate`` on the validation scenes of
``--data`` (e.g. the held-out world of ``TEST_DATA``), the random initialisation (step 0), every kept copy
``*_checkpoint_epNNN.pth.tar`` (train.py's ``--save-freq``) whose step is a multiple of ``--every``, and the
final checkpoint.  A checkpoint's step is the ``n_iter`` it was saved at; copies are kept every ``--save-freq``
epochs (3 by default: every 60 steps at the runner's ``EPOCH_SIZE`` of 20), so ``--every`` should be a multiple
of that spacing.

Writes ``DIR/learning_curve.json`` (``{"commands", "rows": [{"config", "seed", "checkpoint", "step",
"metrics", "kinds"}]}``, ``metrics`` and ``kinds`` shaped like eval_synthetic's metrics.json and
car_kinds.json) after every checkpoint, so an interrupted run continues where it stopped;
``DIR/learning_curve.md``: per step, each configuration's Abs Rel of the moving cars and the background and its
moving-car EPE (mean over seeds), and the full model's gain over the rigid one on the seeds both have at that
step (the bar of issue 18), and last lines averaging the checkpoints of the second half of training and of each
``--windows`` step range, per seed and over all seeds (the mean of the seeds' means; one checkpoint's numbers
swing from one to the next);
``DIR/learning_curve.png``: the same as curves.  With nothing left to evaluate, a call only writes these again
(e.g. with other ``--windows``).
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
             f"python -m experiments.learning_curve")

import numpy as np

from checkpoint_io import CheckpointError, load_file
from checkpoint_set import read_manifest
from datasets.io import DatasetError
from devices import select_device
from experiments.ablation_results import (CONFIG_ORDER, bar_values, change_text, combine, lookup,
                                          paired_values, relative_changes, seed_names)
from experiments.eval_synthetic import BACKGROUND_SPLIT, EvalError, evaluate
from experiments.formatting import number
from experiments.probe_object_size import (checkpoint_labels, checkpoint_paths, load_networks, read_run_args,
                                           run_folder)
from fileio import OutputError, atomic_open
from models import ConfigError

CURVE_REGIONS = ('moving', 'background')


def saved_step(run_dir, label):
    """The ``n_iter`` a kept copy of a run folder was saved at (read from its DispResNet file, memory-mapped)."""
    path = checkpoint_paths(run_dir, label)['disp']
    checkpoint = load_file(path, mmap=True)
    try:
        return int(checkpoint['n_iter'])
    except (KeyError, TypeError, ValueError) as error:
        raise EvalError(f"{path}: not a train.py checkpoint with its iteration ({type(error).__name__})") from None


def checkpoint_steps(run_dir, every):
    """``[(label, step)]`` of a run folder, in training order: ``init`` (step 0), the kept copies whose step is a
    multiple of ``every``, and ``last``."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise EvalError(f"{run_dir}: no checkpoint_set.json (not a finished train.py run folder)")
    last = int(manifest['n_iter'])
    copies = [(label, saved_step(run_dir, label)) for label in checkpoint_labels(run_dir)[1:-1]]
    chosen = [(label, step) for label, step in copies if step % every == 0 and step < last]
    if copies and not chosen:
        print(f"note: {run_dir}: no kept copy is at a multiple of --every {every} (copies at steps "
              f"{', '.join(str(step) for _, step in copies[:3])}, ...)", file=sys.stderr)
    return [('init', 0)] + chosen + [('last', last)]


def evaluate_checkpoint(run_dir, label, run_args, data, device):
    """``(metrics, kinds)``: the metrics.json and car_kinds.json dicts of one checkpoint of a run on the
    validation scenes of ``data`` (networks in evaluation mode, the initialisation's too)."""
    inference, nets, _ = load_networks(run_dir, label, run_args, device)
    for net in nets.values():
        net.eval()
    return evaluate(data, inference, int(run_args['mni']), device)


def row_configs(rows):
    """The configurations of ``rows`` in the ablation's table order (others after them, as they come)."""
    names = list(dict.fromkeys(row['config'] for row in rows))
    return sorted(names, key=lambda name: (CONFIG_ORDER.index(name) if name in CONFIG_ORDER else len(CONFIG_ORDER),
                                           names.index(name)))


def config_rows(rows, config, steps):
    """The rows of ``config`` whose step is in ``steps``."""
    return [row for row in rows if row['config'] == config and row['step'] in steps]


def seed_mean(values):
    """Leaf-wise mean of ``{(seed, step): nested dict}``: over each seed's steps, then over the seeds, so that
    every seed weighs the same however many checkpoints it has (None when empty)."""
    by_seed = {}
    for (seed, _), value in values.items():
        by_seed.setdefault(seed, []).append(value)
    return combine([combine(group, np.mean) for group in by_seed.values()], np.mean)


def mean_metrics(rows):
    """The metrics of ``rows`` averaged leaf-wise (:func:`seed_mean`; None without a row)."""
    return seed_mean({(row['seed'], row['step']): row['metrics'] for row in rows})


def paired_gain(rows, steps):
    """``(moving-car gain, background change, seeds)`` of full over rigid on the (seed, step) pairs both have
    among ``steps`` (:func:`ablation_results.relative_changes` of their :func:`seed_mean` Abs Rel); None without
    a pair."""
    full, rigid = ({(row['seed'], row['step']): row['metrics'] for row in config_rows(rows, config, steps)}
                   for config in ('full', 'rigid'))
    _, pairs = paired_values(full, rigid)
    if not pairs:
        return None
    values = bar_values(*(seed_mean({key: metrics[key] for key in pairs}) for metrics in (full, rigid)))
    return (*relative_changes(values), sorted({seed for seed, _ in pairs}))


def summary_lines(rows, label, steps):
    """``[(label, steps, rows)]`` of the lines averaging the checkpoints at ``steps``: one per seed when there are
    several, then all seeds together."""
    seeds = sorted({row['seed'] for row in rows})
    per_seed = [(f'{label}, seed {seed}', steps, [row for row in rows if row['seed'] == seed])
                for seed in seeds] if len(seeds) > 1 else []
    return per_seed + [(label + (', all seeds' if per_seed else ''), steps, rows)]


def step_window(text):
    """``(first, last)`` of a ``--windows`` range ``FIRST-LAST`` (argparse type)."""
    first, dash, last = text.partition('-')
    if not (dash and first.isdigit() and last.isdigit() and int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"not a step range FIRST-LAST with FIRST <= LAST: {text!r}")
    return int(first), int(last)


def format_markdown(rows, commands, windows=()):
    """learning_curve.md: one line per step, then the means over the checkpoints of the second half of training
    and of each ``(first, last)`` step range of ``windows`` (:func:`summary_lines`)."""
    configs = row_configs(rows)
    steps = sorted({row['step'] for row in rows})
    half = steps[-1] / 2
    summaries = [(f'mean of steps >= {half:g}', {step for step in steps if step >= half})]
    summaries += [(f'mean of steps {first}-{last}', {step for step in steps if first <= step <= last})
                  for first, last in windows]
    header = ['step'] + [f'{config} {column}' for config in configs
                         for column in ('moving', 'background', 'moving EPE (m)')]
    with_bar = {'full', 'rigid'} <= set(configs)
    if with_bar:
        header += ['moving: full vs rigid', 'background: full vs rigid']
    lines = ['# Learning curve on the synthetic world', '', 'Commands:', '']
    lines += [f'    {command}' for command in commands]
    lines += ['', 'Abs Rel (mean over the seeds evaluated at that step); the gain of full over rigid is on the seeds '
              'both have at that step (issue 18 asks for >= 25 % lower moving-car Abs Rel, background <= 5 % '
              f'worse). The last lines average the checkpoints of the second half of training (steps >= {half:g}) '
              'and of each --windows range: per seed when there are several, then over all seeds (the mean of the '
              "seeds' means).", '',
              '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines_of = [(str(step), {step}, rows) for step in steps]
    lines_of += [line for label, chosen in summaries for line in summary_lines(rows, label, chosen)]
    for label, selected, subset in lines_of:
        cells = [label]
        for config in configs:
            mean = mean_metrics(config_rows(subset, config, selected))
            cells += [number(lookup(mean, 'depth', region, 'abs_rel')) for region in CURVE_REGIONS]
            cells.append(number(lookup(mean, 'objects', 'moving', 'epe')))
        if with_bar:
            gain = paired_gain(subset, selected)
            cells += ['n/a', 'n/a'] if gain is None else [change_text(gain[0], 'lower', 'higher'),
                                                          change_text(-gain[1], 'better', 'worse')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines + background_split_lines(rows, summaries)) + '\n'


def background_split_lines(rows, summaries):
    """The lines of the background-split table (empty when no row's ``kinds`` has ``background_split``, the
    split of :func:`experiments.eval_synthetic.background_split`): for each ``(label, steps)`` of ``summaries``,
    each configuration's mean Abs Rel / signed error of every part of the background over its checkpoints at
    ``steps`` that have the split, and the full model's change of Abs Rel on the (seed, step) pairs both have."""
    with_split = [row for row in rows if lookup(row, 'kinds', 'background_split')]
    if not with_split:
        return []
    configs = row_configs(with_split)
    header = ['steps', 'config', 'seeds'] + list(BACKGROUND_SPLIT)
    lines = ['', 'Background split (eval_synthetic.background_split: by distance to the nearest car pixel, image '
             'half, true depth): Abs Rel / mean log(prediction / truth), > 0 drawn too far; mean over the '
             'checkpoints that have it.', '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for label, steps in summaries:
        splits = {config: {(row['seed'], row['step']): row['kinds']['background_split']
                           for row in config_rows(with_split, config, steps)} for config in configs}
        for config in configs:
            mean = seed_mean(splits[config])
            seeds = seed_list(splits[config])
            cells = [number(lookup(mean, name, 'abs_rel')) + ' / '
                     + number(lookup(mean, name, 'log_ratio')) for name in BACKGROUND_SPLIT]
            lines.append('| ' + ' | '.join([label, config, seeds] + cells) + ' |')
        pairs = [key for key in splits.get('full', {}) if key in splits.get('rigid', {})]
        if pairs:
            full, rigid = (seed_mean({key: splits[config][key] for key in pairs}) for config in ('full', 'rigid'))
            seeds = seed_list(pairs)
            cells = [split_change(lookup(full, name, 'abs_rel'), lookup(rigid, name, 'abs_rel'))
                     for name in BACKGROUND_SPLIT]
            lines.append('| ' + ' | '.join([label, 'full vs rigid', seeds] + cells) + ' |')
    return lines


def seed_list(keys):
    """``'0, 1, 4'``: the seeds of ``(seed, step)`` keys, sorted and once each (``none`` without a key)."""
    return seed_names({str(seed) for seed, _ in keys})


def split_change(full, rigid):
    """``'x.x % better|worse'``: the change of the full model's Abs Rel against the rigid model's (n/a without
    both)."""
    if full is None or not rigid:
        return 'n/a'
    return change_text(1 - full / rigid, 'better', 'worse')


def save_figure(path, rows):
    """learning_curve.png: moving-car and background Abs Rel and moving-car EPE against the step."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    configs = row_configs(rows)
    panels = [('moving-car Abs Rel', ('depth', 'moving', 'abs_rel')),
              ('background Abs Rel', ('depth', 'background', 'abs_rel')),
              ('moving-car EPE (m)', ('objects', 'moving', 'epe'))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for axis, (title, keys) in zip(axes, panels):
        for config in configs:
            steps = sorted({row['step'] for row in rows if row['config'] == config})
            values = [lookup(mean_metrics(config_rows(rows, config, {step})), *keys) for step in steps]
            axis.plot(steps, [np.nan if v is None else v for v in values], marker='o', markersize=3, label=config)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel('training step')
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format='png', dpi=100)
    plt.close(fig)


def read_rows(out, data):
    """``(rows, commands)`` of an earlier run into ``out`` (empty without one); it must have evaluated ``data``."""
    path = out / 'learning_curve.json'
    if not path.is_file():
        return [], []
    try:
        saved = json.loads(path.read_text())
        rows, commands, saved_data = saved['rows'], saved['commands'], saved['data']
    except (ValueError, KeyError, TypeError) as error:
        raise EvalError(f"{path}: not a learning_curve.json of this tool ({type(error).__name__}: {error}); "
                        f"move it away or give another --output-dir") from None
    if Path(saved_data).resolve() != Path(data).resolve():
        raise EvalError(f"{path}: evaluated on {saved_data}, not on --data {data}; give another --output-dir")
    return rows, commands


def write_outputs(out, data, rows, commands, windows=()):
    """learning_curve.json, .md (with the summary lines of ``windows``) and .png under ``out``, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / 'learning_curve.json') as handle:
        handle.write(json.dumps({'data': str(Path(data).resolve()), 'commands': commands, 'rows': rows},
                                indent=1).encode())
    with atomic_open(out / 'learning_curve.md') as handle:
        handle.write(format_markdown(rows, commands, windows).encode())
    save_figure(out / 'learning_curve.png', rows)


def evaluate_run(args, config, seed, rows, commands, device):
    """The rows with the checkpoints of run ``config``/``seed`` that ``rows`` lacks evaluated (outputs written
    after each); the row of a final checkpoint that a longer training replaced is dropped.  A run whose
    checkpoints are gone (``PRUNE=1``) keeps the rows evaluated before."""
    kept = sum((row['config'], row['seed']) == (config, seed) for row in rows)
    run_dir = run_folder(args.runs, config, seed, pruned_ok=kept > 0)
    if run_dir is None:
        print(f"note: {config} seed {seed}: its run folder is gone (pruned); the {kept} checkpoints evaluated "
              f"before are kept", file=sys.stderr)
        return rows
    run_args = read_run_args(run_dir)
    for label, step in checkpoint_steps(run_dir, args.every):
        earlier = [row for row in rows if (row['config'], row['seed'], row['checkpoint']) == (config, seed, label)]
        if earlier and earlier[0]['step'] == step:
            continue
        start = time.time()
        metrics, kinds = evaluate_checkpoint(run_dir, label, run_args, args.data, device)
        rows = [row for row in rows if row not in earlier] + [
            {'config': config, 'seed': seed, 'checkpoint': label, 'step': step, 'metrics': metrics, 'kinds': kinds}]
        write_outputs(args.output_dir, args.data, rows, commands, args.windows)
        print(f"{config} seed {seed} {label} (step {step}): moving "
              f"{number(lookup(metrics, 'depth', 'moving', 'abs_rel'))}, background "
              f"{number(lookup(metrics, 'depth', 'background', 'abs_rel'))} ({time.time() - start:.0f} s)",
              flush=True)
    return rows


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', required=True, type=Path, help='the runs/ folder of scripts/run_ablation.sh')
    parser.add_argument('--data', required=True, type=Path,
                        help='synthetic KITTI-VIS folder whose validation scenes are evaluated (e.g. TEST_DATA)')
    parser.add_argument('--configs', nargs='+', default=['full', 'rigid'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--every', type=int, default=300,
                        help='evaluate the kept copies whose step is a multiple of this (default 300)')
    parser.add_argument('--windows', nargs='+', type=step_window, default=[], metavar='FIRST-LAST',
                        help='also average the checkpoints of these step ranges (e.g. 1500-2340 2400-3000)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--output-dir', required=True, type=Path,
                        help='results go here; checkpoints already in its learning_curve.json are not evaluated again')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.every < 1:
        print(f"error: --every must be >= 1, got {args.every}", file=sys.stderr)
        return 2
    command = 'python -m experiments.learning_curve ' + ' '.join(sys.argv[1:] if argv is None else argv)
    try:
        device = select_device(args.device)
        rows, commands = read_rows(args.output_dir, args.data)
        commands = commands + [command]
        for config in args.configs:
            for seed in args.seeds:
                rows = evaluate_run(args, config, seed, rows, commands, device)
        write_outputs(args.output_dir, args.data, rows, commands, args.windows)
    except (EvalError, DatasetError, CheckpointError, ConfigError, OutputError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_markdown(rows, commands, args.windows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
