"""Loader speed: mean seconds per sample of SequenceFolder with the training augmentation.

Measures, on toy KITTI-VIS data (or ``--root``):
  * uncached: association recomputed for every sample (``cache=False``);
  * cold cache: first pass with an empty cache (computes and writes the entries);
  * warm cache: a pass with every entry cached;
  * warm cache through a DataLoader with ``--workers`` workers (wall time of a whole epoch,
    worker start-up included, divided by the number of samples).

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_loader.py [--height 128 --width 416 --mni 3]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import SequenceFolder  # noqa: E402
from datasets.custom_transforms import train_transform  # noqa: E402
from datasets.toy_data import write_toy_kitti_vis  # noqa: E402


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
    return parser.parse_args()


def seconds_per_sample(dataset):
    """Mean wall seconds of ``dataset[i]`` over one pass."""
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return (time.perf_counter() - start) / len(dataset)


def loader_seconds_per_sample(dataset, workers, batch_size):
    """Wall seconds of one DataLoader epoch (start-up included) divided by the number of samples."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True)
    start = time.perf_counter()
    for _ in loader:
        pass
    return (time.perf_counter() - start) / len(dataset)


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
        cached = SequenceFolder(root, cache_dir=Path(tmp) / 'cache', **options)
        print(f"data: {root if args.root else 'toy'}  {len(cached)} samples  "
              f"{args.height}x{args.width}  mni={args.mni}  sequence_length={args.sequence_length}  "
              f"torch threads={torch.get_num_threads()}")
        results = [
            ('uncached (association every sample)', seconds_per_sample(uncached)),
            ('cold cache (first pass, writes entries)', seconds_per_sample(cached)),
            ('warm cache', seconds_per_sample(cached)),
            (f'warm cache, DataLoader {args.workers} workers, batch {args.batch_size}',
             loader_seconds_per_sample(cached, args.workers, args.batch_size)),
        ]
        for name, value in results:
            print(f"{name:55s} {value:.4f} s/sample")


if __name__ == '__main__':
    main()
