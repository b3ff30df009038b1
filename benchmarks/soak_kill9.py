"""Kill -9 soak test of train.py: crash a tiny run many times, resume it each time, check the result.

    python -m benchmarks.soak_kill9 [--kills 20] [--epochs 6] [--workdir DIR]

A tiny run (toy data, 64x64 frames, 2 iterations per epoch) is killed with SIGKILL at random moments:
half of the kills at a random time after training started, half as soon as a save is under way (a
pending checkpoint file appears).  After each kill the run is resumed with ``--resume`` (or started
again when it died before its first checkpoint).  After the last kill it runs to the end, and:

* every ``*.pth.tar`` of the run folder loads, and the files of the committed set carry its epoch and
  iteration;
* the epochs of ``progress_log_summary.csv`` and the iterations of ``progress_log_full.csv`` are
  unique and increasing, with nothing missing;
* the final weights equal those of an uninterrupted run with the same arguments.

Each kill comes within one epoch's time after the run started training, so a run resumed many times
still has work left for the next kill; when it finishes before ``--kills`` kills, fewer are reported.

Prints the number of kills survived (and how many hit a save) and exits 1 when a check fails.
"""
import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch

from checkpoint_io import load_checkpoint, load_file
from checkpoint_set import read_manifest
from datasets.toy_data import write_toy_kitti_vis

NETWORK_FILES = ('dispnet_checkpoint.pth.tar', 'ego_pose_checkpoint.pth.tar', 'obj_pose_checkpoint.pth.tar')
STEPS_PER_EPOCH = 2
TINY = ['--with-pretrain', '0', '-b', '1', '-j', '0', '-mni', '1', '--epoch-size', str(STEPS_PER_EPOCH),
        '--print-freq', '0', '--image-freq', '0', '--save-freq', '2', '--device', 'cpu']


def train_command(data, root, epochs, resume=None):
    command = [sys.executable, str(ROOT / 'train.py'), str(data), '--name', 'soak', '--epochs', str(epochs),
               '--checkpoint-root', str(root)] + TINY
    return command + (['--resume', str(resume)] if resume else [])


class Training:
    """A train.py process; ``run_dir`` is known once it printed "=> saving to"."""

    def __init__(self, command, cwd):
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.started = threading.Event()
        self.started_at = None
        self.run_dir = None
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith('=> saving to '):
                self.run_dir = Path(line.split('=> saving to ')[1].split(' |')[0])
                self.started_at = time.time()
                self.started.set()
        self.started.set()


def saving(run_dir):
    return run_dir is not None and run_dir.is_dir() and any(
        name.endswith(('.pending', '.tmp')) for name in os.listdir(run_dir))


def kill_at_random(training, rng, epoch_seconds):
    """SIGKILL the run at a random moment or as soon as a save is under way; returns whether it hit a save."""
    training.started.wait()
    if training.process.poll() is not None:
        return False
    deadline = time.time() + rng.uniform(0, epoch_seconds)
    wait_for_save = rng.random() < 0.5
    while training.process.poll() is None and time.time() < deadline:
        if wait_for_save and saving(training.run_dir):
            time.sleep(rng.uniform(0, 0.3))
            break
        time.sleep(0.01)
    during_save = saving(training.run_dir)
    if training.process.poll() is None:
        training.process.send_signal(signal.SIGKILL)
    training.process.wait()
    return during_save


def check_run(run_dir, epochs, reference):
    """Problems found in the finished run folder (an empty list when all is well)."""
    problems = []
    for path in sorted(run_dir.glob('*.pth.tar')):
        try:
            (load_file if path.name == 'training_state.pth.tar' else load_checkpoint)(path)
        except Exception as error:  # noqa: BLE001  (report any failure to load)
            problems.append(f"{path}: does not load ({error})")
    manifest = read_manifest(run_dir)
    for name in manifest['files']:
        checkpoint = torch.load(run_dir / name, weights_only=True)
        if (checkpoint['epoch'], checkpoint['n_iter']) != (manifest['epoch'], manifest['n_iter']):
            problems.append(f"{name}: not of the committed set")
    for log, expected in (('progress_log_summary.csv', list(range(1, epochs + 1))),
                          ('progress_log_full.csv', list(range(epochs * STEPS_PER_EPOCH)))):
        with open(run_dir / log) as f:
            first_column = [int(row[0]) for row in list(csv.reader(f, delimiter='\t'))[1:]]
        if first_column != expected:
            problems.append(f"{log}: first column {first_column}, expected {expected}")
    for name in NETWORK_FILES:
        mine, theirs = load_checkpoint(run_dir / name)['state_dict'], load_checkpoint(reference / name)['state_dict']
        if any(not torch.equal(value, theirs[key]) for key, value in mine.items()):
            problems.append(f"{name}: weights differ from the uninterrupted run")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=20, help='number of SIGKILLs')
    parser.add_argument('--epochs', type=int, default=10, help='epochs of the tiny run')
    parser.add_argument('--seed', type=int, default=0, help='seed of the kill moments')
    parser.add_argument('--workdir', default=None, help='where data and runs go (default: a temporary folder)')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix='soak_kill9_'))
    data = work / 'data'
    if not data.is_dir():
        write_toy_kitti_vis(str(data), num_scenes=1, num_frames=4, height=64, width=64, num_objects=3)

    start = time.time()
    reference = Training(train_command(data, work / 'reference', args.epochs), work)
    reference.process.wait()
    if reference.process.returncode != 0:
        sys.exit('the uninterrupted reference run failed:\n' + ''.join(reference.output[-20:]))
    epoch_seconds = (time.time() - reference.started_at) / args.epochs
    print(f"reference run: {args.epochs} epochs, {epoch_seconds:.1f} s per epoch ({reference.run_dir})", flush=True)

    run_dir, kills, during_saves, fresh_starts = None, 0, 0, 0
    while True:
        resume = run_dir if run_dir is not None and read_manifest(run_dir) is not None else None
        fresh_starts += resume is None
        training = Training(train_command(data, work / 'soak', args.epochs, resume), work)
        if kills == args.kills:
            training.process.wait()
            break
        hit_save = kill_at_random(training, rng, epoch_seconds)
        if training.process.returncode == 0:
            break
        run_dir = training.run_dir or run_dir
        kills += 1
        during_saves += hit_save
        print(f"kill {kills}/{args.kills}: {'during a save' if hit_save else 'between saves'}", flush=True)
    if training.process.returncode != 0:
        sys.exit('the final run failed:\n' + ''.join(training.output[-20:]))
    run_dir = training.run_dir
    problems = check_run(run_dir, args.epochs, reference.run_dir)
    print(f"{kills} kills survived ({during_saves} during a save; {fresh_starts - 1} before a first checkpoint, "
          f"so started afresh); {'all checks passed' if not problems else 'FAILED'} ({time.time() - start:.0f} s)")
    for problem in problems:
        print(f"  {problem}")
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
