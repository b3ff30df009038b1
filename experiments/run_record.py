"""What each run of ``scripts/run_ablation.sh`` was trained with, and on which machine.

    python -m experiments.run_record check --out OUT --data VIS_ROOT -- TRAIN_FLAGS...
    python -m experiments.run_record write --seed-dir OUT/runs/CONFIG/seedS --data VIS_ROOT --device auto \
        -- TRAIN_FLAGS...

An ablation's seeds are averaged together and often trained over several invocations (and machines), so each
seed folder keeps

* ``train_settings.txt``: the settings every configuration and seed of an OUT shares (the configuration's own
  flags are in ``OUT/runs/CONFIG/flags.txt``), two lines::

      flags: <train.py flags: losses, batch, steps, precision, EXTRA_FLAGS ...>
      world: <the training world's synthetic_config.json, compact with sorted keys; "none" for other data>

  without the flags that change how a run is executed but not what it learns (:data:`EXECUTION_SWITCHES`,
  :data:`EXECUTION_OPTIONS`: the device, the loader workers, the memory layout, compilation, logging and
  checkpoint frequencies);
* ``machines.txt``: one line per machine that trained it (``cuda: GPU NAME ...`` or ``cpu: MODEL (vector units,
  bf16 instructions, threads) ...``, with those execution flags), a line per resume on another machine or with
  other execution flags.

``check`` (run by the runner before it starts anything) exits 2 with a one-line error naming the first seed folder
whose ``train_settings.txt`` differs from the settings of this invocation: seeds trained otherwise would be averaged
as if they were one experiment.  ``write`` records a seed whose training starts (or resumes).
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

from fileio import atomic_open

SETTINGS_FILE = 'train_settings.txt'
MACHINES_FILE = 'machines.txt'
EXECUTION_SWITCHES = ('--channels-last', '--compile', '--no-cache')
EXECUTION_OPTIONS = ('--device', '-j', '--workers', '--lean-activations', '--mmap-threshold', '--print-freq',
                     '--save-freq', '--image-freq')


class RecordError(ValueError):
    """A seed folder trained with other settings (one-line message naming its file)."""


def world_text(data):
    """The training world as a line: ``DATA/synthetic_config.json`` compact with sorted keys, ``none`` without
    one (data not written by ``data.synthetic``)."""
    config = Path(data) / 'synthetic_config.json'
    if not config.is_file():
        return 'none'
    try:
        return json.dumps(json.loads(config.read_text()), sort_keys=True, separators=(',', ':'))
    except (OSError, ValueError) as error:
        raise RecordError(f"{config}: not readable JSON ({type(error).__name__}: {error})") from None


def split_execution_flags(flags):
    """``(learning, execution)``: train.py arguments ``flags`` (a list) without and with the execution flags."""
    learning, execution = [], []
    i = 0
    while i < len(flags):
        width = 2 if flags[i] in EXECUTION_OPTIONS else 1
        (execution if flags[i] in EXECUTION_OPTIONS + EXECUTION_SWITCHES else learning).extend(flags[i:i + width])
        i += width
    return learning, execution


def settings_text(flags, data):
    """The two lines of ``train_settings.txt`` for ``flags`` (a list of train.py arguments; the execution flags
    are left out) and the world at ``data``."""
    return f"flags: {' '.join(split_execution_flags(flags)[0])}\nworld: {world_text(data)}\n"


def read_settings(seed_dir):
    """The text of a seed folder's ``train_settings.txt``; None without one (a run older than the record)."""
    path = Path(seed_dir) / SETTINGS_FILE
    return path.read_text() if path.is_file() else None


def read_machines(seed_dir):
    """The lines of a seed folder's ``machines.txt`` (``[]`` without one)."""
    path = Path(seed_dir) / MACHINES_FILE
    return path.read_text().splitlines() if path.is_file() else []


def flag_groups(words):
    """Command-line words grouped as each flag with its values, e.g. ``['-b 4', '--with-ssim']`` (the world's
    one word stays one group)."""
    groups = []
    for word in words:
        if groups and not (word.startswith('-') and not word[1:2].isdigit()):
            groups[-1] += f' {word}'
        else:
            groups.append(word)
    return groups


def settings_difference(recorded, current):
    """One phrase on how two settings texts differ: the first line that does, with the flags (and their values)
    only one side has."""
    for old, new in zip(recorded.splitlines(), current.splitlines()):
        if old != new:
            field = old.split(':', 1)[0]
            old_groups, new_groups = flag_groups(old.split()[1:]), flag_groups(new.split()[1:])
            only_old = ' '.join(g for g in old_groups if g not in new_groups) or 'nothing'
            only_new = ' '.join(g for g in new_groups if g not in old_groups) or 'nothing'
            return f"{field} differ{'' if field == 'flags' else 's'}: {only_old!r} there, {only_new!r} here"
    return 'the record is damaged'


def seed_folders(folder):
    """``[(seed, path)]`` of a configuration folder's ``seedS`` folders (S a number; others, e.g. a backup
    ``seed0.old``, are not seeds), in numeric order."""
    found = [(path.name[len('seed'):], path) for path in Path(folder).glob('seed*') if path.is_dir()]
    return sorted(((seed, path) for seed, path in found if seed.isdigit()), key=lambda item: int(item[0]))


def seed_dirs(out):
    """Every ``OUT/runs/CONFIG/seedS`` folder, configuration by configuration."""
    return [path for config in sorted(Path(out).glob('runs/*')) for _, path in seed_folders(config)]


def check_settings(out, current):
    """Raise RecordError naming the first seed folder of ``out`` whose recorded settings are not ``current``."""
    for seed_dir in seed_dirs(out):
        recorded = read_settings(seed_dir)
        if recorded is not None and recorded != current:
            raise RecordError(f"{seed_dir / SETTINGS_FILE}: this run was trained with other settings than this "
                              f"invocation's ({settings_difference(recorded, current)}); its seeds would be "
                              "averaged with yours: use the same settings or another OUT")


def common_settings(seed_settings):
    """``(text, unrecorded)`` of ``{seed folder: settings text or None}``: the one text the recorded seed folders
    share (None when none has one) and the folders without a record; RecordError naming a folder's
    ``train_settings.txt`` that differs from the first recorded one's."""
    first, shared = None, None
    for seed_dir, text in seed_settings.items():
        if text is None or text == shared:
            continue
        if shared is not None:
            raise RecordError(f"{Path(seed_dir) / SETTINGS_FILE}: trained with other settings than {first} "
                              f"({settings_difference(shared, text)}); they cannot be averaged as one experiment")
        first, shared = seed_dir, text
    return shared, [seed_dir for seed_dir, text in seed_settings.items() if text is None]


def machine_line(device, execution=()):
    """One line on the machine that trains on ``device``: the GPU's name, or the CPU's model and vector units;
    the torch version and the execution flags (a list) of the training."""
    # torch is imported here, not above: ``check`` runs before every ablation and must not wait seconds for it
    import torch

    import precision
    run = f"torch {torch.__version__}" + (f", run with {' '.join(execution)}" if execution else '')
    if device.type == 'cuda':
        return f"cuda: {torch.cuda.get_device_name(device)}, {run}"
    return f"cpu: {cpu_model()}, {os.cpu_count()} cores ({precision.cpu_capability()}), {run}"


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def write_record(seed_dir, flags, data, device):
    """Write ``train_settings.txt`` of ``flags`` (train.py's, a list) and the world at ``data``, and add this
    machine's line to ``machines.txt`` if new."""
    seed_dir = Path(seed_dir)
    with atomic_open(seed_dir / SETTINGS_FILE) as handle:
        handle.write(settings_text(flags, data).encode())
    machines = read_machines(seed_dir)
    line = machine_line(device, split_execution_flags(flags)[1])
    if line not in machines:
        with atomic_open(seed_dir / MACHINES_FILE) as handle:
            handle.write(''.join(f'{m}\n' for m in machines + [line]).encode())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('action', choices=('check', 'write'))
    parser.add_argument('--out', type=Path, help='check: the OUT folder of run_ablation.sh')
    parser.add_argument('--seed-dir', type=Path, help='write: the seed folder OUT/runs/CONFIG/seedS')
    parser.add_argument('--data', required=True, type=Path, help='the training world (a KITTI-VIS folder)')
    parser.add_argument('--device', default='auto', help="write: the device of the training (train.py's --device)")
    parser.epilog = 'The shared train.py flags follow a --.'
    argv = sys.argv[1:] if argv is None else list(argv)
    end = argv.index('--') if '--' in argv else len(argv)
    args, flags = parser.parse_args(argv[:end]), argv[end + 1:]
    if (args.out if args.action == 'check' else args.seed_dir) is None:
        parser.error(f"{args.action} needs {'--out' if args.action == 'check' else '--seed-dir'}")
    try:
        if args.action == 'check':
            check_settings(args.out, settings_text(flags, args.data))
        else:
            from devices import select_device    # imports torch (see machine_line)
            write_record(args.seed_dir, flags, args.data, select_device(args.device))
    except (RecordError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
