"""Time the synthetic world generator: rendering, KITTI-VIS writing, raw-KITTI writing (lidar included).

Usage: python -m benchmarks.bench_synthetic [--scenes 4 --frames 20 --height 128 --width 416 --seed 0]
Prints seconds per stage, the total (the issue's target: under a minute for the defaults on
2 CPU cores), seconds per frame, the output size and the peak resident memory of the process.
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

from data import synthetic


def folder_megabytes(root):
    """Total size of the files below ``root`` in MB."""
    return sum(p.stat().st_size for p in Path(root).rglob('*') if p.is_file()) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scenes', type=int, default=4)
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=416)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    stages = {}
    start = time.perf_counter()
    scenes = [synthetic.render_scene(args.seed, i, args.height, args.width, args.frames) for i in range(args.scenes)]
    stages['render (images, depth, masks, flows, occlusion)'] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        synthetic.write_kitti_vis(scenes, Path(out) / 'vis')
        stages['write KITTI-VIS (jpg, npy, flo, json)'] = time.perf_counter() - start
        start = time.perf_counter()
        synthetic.write_raw_kitti(scenes, Path(out) / 'raw')
        stages['write raw KITTI (png, lidar scans, calib, dense GT)'] = time.perf_counter() - start
        sizes = {name: folder_megabytes(Path(out) / name) for name in ('vis', 'raw')}
    total = sum(stages.values())
    frames = args.scenes * args.frames
    print(f'{args.scenes} scenes x {args.frames} frames at {args.height}x{args.width}, seed {args.seed}, '
          f'layout both')
    for name, seconds in stages.items():
        print(f'  {name:55s} {seconds:7.2f} s')
    print(f'  {"total":55s} {total:7.2f} s  ({total / frames * 1000:.0f} ms per frame)')
    print(f'  output size: vis {sizes["vis"]:.1f} MB, raw {sizes["raw"]:.1f} MB')
    print(f'  peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')


if __name__ == '__main__':
    main()
