"""Loader speed: mean seconds per sample of SequenceFolder with the training augmentation.

Measures, on toy KITTI-VIS data (or ``--root``):
  * uncached: association recomputed for every sample (``cache=False``);
  * cold cache: first pass with an empty cache (computes and writes the entries);
  * warm cache: a pass with every entry cached;
  * warm cache through a DataLoader with ``--workers`` persistent workers: wall time of the first
    epoch (worker start-up included) and of the later epochs, divided by the number of samples.
Each measurement is repeated ``--repeats`` times; the minimum (least disturbed by other processes
on the machine) and the median are printed.

Usage: OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_loader [--height 128 --width 416 --mni 3]
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


from datasets import SequenceFolder
from datasets.custom_transforms import train_transform
from datasets.toy_data import write_toy_kitti_vis


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', type=Path, help='existing KITTI-VIS folder (default: write toy data)')
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=416)
    parser.add_argument('--scenes', type=int, default=3, help='toy scenes (the last one is the val scene)')
    parser.add_argument('--frames', type=int, default=20, help='frames per toy scene')
    parser.add_argument('--objects', type=int, default=8, help='moving objects per toy scene')
    parser.add_argument('--mni', type=int, default=3)
    parser.add_argument('--sequence-length', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=3, help='passes per measurement (the minimum is reported)')
    return parser.parse_args()


def seconds_per_sample(dataset):
    """Mean wall seconds of ``dataset[i]`` over one pass."""
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return (time.perf_counter() - start) / len(dataset)


def loader_epochs(dataset, workers, batch_size, epochs):
    """Seconds per sample of each epoch of one DataLoader with persistent workers (epoch 1 includes start-up)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True,
                                         persistent_workers=workers > 0)
    times = []
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in loader:
            pass
        now = time.perf_counter()
        times.append((now - start) / len(dataset))
        start = now
    return times


def summary(values):
    """'min  (median)' of per-pass seconds per sample."""
    return f"{min(values):.4f} s/sample  (median {statistics.median(values):.4f}, {len(values)} passes)"


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / 'toy'
            write_toy_kitti_vis(root, num_scenes=args.scenes, num_frames=args.frames, height=args.height,
                                width=args.width, num_objects=args.objects, seed=0)
        options = dict(seed=0, max_num_instances=args.mni, sequence_length=args.sequence_length,
                       transform=train_transform())
        uncached = SequenceFolder(root, cache=False, **options)
        print(f"data: {root if args.root else 'toy'}  {len(uncached)} samples  "
              f"{args.height}x{args.width}  mni={args.mni}  sequence_length={args.sequence_length}  "
              f"torch threads={torch.get_num_threads()}  load average {os.getloadavg()[0]:.2f}")
        cold = []
        for repeat in range(args.repeats):
            cached = SequenceFolder(root, cache_dir=Path(tmp) / f'cache{repeat}', **options)
            cold.append(seconds_per_sample(cached))
        rows = [
            ('uncached (association every sample)', [seconds_per_sample(uncached) for _ in range(args.repeats)]),
            ('cold cache (first pass, writes entries)', cold),
            ('warm cache', [seconds_per_sample(cached) for _ in range(args.repeats)]),
        ]
        epochs = loader_epochs(cached, args.workers, args.batch_size, args.repeats + 1)
        loader = f'warm cache, DataLoader {args.workers} workers, batch {args.batch_size}'
        rows += [(f'{loader}, first epoch (start-up)', epochs[:1]), (f'{loader}, later epochs', epochs[1:])]
        for name, values in rows:
            print(f"{name:70s} {summary(values)}")


if __name__ == '__main__':
    main()
