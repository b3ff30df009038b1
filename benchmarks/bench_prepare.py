"""Time data/prepare_train_data.py on synthetic raw-KITTI drives (frames per second, 1 and 2 workers).

Usage: python -m benchmarks.bench_prepare [--drives 2 --copies 4 --frames 30 --height 256 --width 832
                                          --workers 1 2 --repeats 1 --masks gt|none --data DIR]

Renders ``--drives`` synthetic drives once (kept in ``--data`` when given, so later runs skip it),
links each ``--copies`` times under new drive names (more scenes without more rendering), then
prepares them from scratch into a fresh folder for every worker count (DIS flow, masks from the
synthetic ground truth or none, velodyne depth for the val drive) and prints the wall time and
frames per second of the whole command (worker start-up included), the best of ``--repeats``.
Also prints the DIS time per frame pair and its end-point error against the exact flow.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from data import prepare_train_data, synthetic
from data.prepare_models import DisFlow


def make_drives(data_dir, drives, frames, height, width):
    """Synthetic drives in ``data_dir`` (raw and vis layouts), rendered unless already there."""
    config = data_dir / 'raw' / synthetic.CONFIG_FILE
    if not config.is_file():
        start = time.perf_counter()
        synthetic.generate(data_dir, scenes=drives, frames=frames, height=height, width=width, overwrite=True)
        print(f"rendered {drives} synthetic drive(s) of {frames} frames at {width}x{height} "
              f"in {time.perf_counter() - start:.1f} s")
    return data_dir


def link_copies(data_dir, target, copies):
    """Raw root and mask folder under ``target`` with every rendered drive linked ``copies`` times.

    Returns:
        ``(raw root, masks folder, number of drives)``.
    """
    raw, masks = target / 'raw', target / 'masks'
    date_dir = raw / synthetic.DATE
    date_dir.mkdir(parents=True)
    masks.mkdir()
    for name in ('calib_cam_to_cam.txt', 'calib_velo_to_cam.txt'):
        (date_dir / name).symlink_to(data_dir / 'raw' / synthetic.DATE / name)
    drives = sorted(p for p in (data_dir / 'raw' / synthetic.DATE).iterdir() if p.is_dir())
    number = 0
    for _ in range(copies):
        for drive in drives:
            name = synthetic.drive_name(number)
            (date_dir / name).symlink_to(drive, target_is_directory=True)
            (masks / f'{name}_02').symlink_to(data_dir / 'vis' / 'segmentation' / f'{drive.name}_02',
                                              target_is_directory=True)
            number += 1
    return raw, masks, number


def time_preparation(raw, masks_dir, out, width, height, workers, masks):
    """Wall seconds of one full preparation into the fresh folder ``out``."""
    mask_args = ['--masks-from', str(masks_dir)] if masks == 'gt' else ['--masks', 'none']
    argv = ['--source', 'kitti', '--input', str(raw), '--output', str(out), '--img-width', str(width),
            '--img-height', str(height), '--test-scenes', 'none', '--val-depth', '--workers', str(workers), *mask_args]
    start = time.perf_counter()
    if prepare_train_data.main(argv) != 0:
        raise SystemExit('the preparation failed')
    return time.perf_counter() - start


def dis_numbers(height, width, frames=4):
    """``(ms per DIS call (one direction), mean EPE, median EPE)`` on the first drive's frames vs the exact flow."""
    scene = synthetic.render_scene(0, 0, height, width, frames)
    flow, errors, seconds = DisFlow(), [], []
    for k in range(scene.frames - 1):
        start = time.perf_counter()
        forward, _ = flow(scene.images[k], scene.images[k + 1])
        seconds.append((time.perf_counter() - start) / 2)
        errors.append(np.linalg.norm(forward - scene.flow_f[k], axis=2)[~scene.occlusion_f[k]])
    errors = np.concatenate(errors)
    return 1000 * min(seconds), float(errors.mean()), float(np.median(errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--drives', type=int, default=2)
    parser.add_argument('--copies', type=int, default=4)
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=832)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--masks', choices=('gt', 'none'), default='gt')
    parser.add_argument('--data', type=Path, default=None, help='keep the rendered drives here')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = make_drives(args.data or Path(tmp) / 'synthetic', args.drives, args.frames, args.height, args.width)
        raw, masks_dir, drives = link_copies(data_dir, Path(tmp) / 'linked', args.copies)
        total = drives * args.frames
        results = {}
        for workers in args.workers:
            runs = [time_preparation(raw, masks_dir, Path(tmp) / f'out_{workers}_{r}', args.width, args.height,
                                     workers, args.masks) for r in range(args.repeats)]
            results[workers] = min(runs)
    ms, mean_epe, median_epe = dis_numbers(args.height, args.width)
    print(f"\n{drives} drive(s) x {args.frames} frames at {args.width}x{args.height}, DIS flow, "
          f"masks {args.masks}, {os.cpu_count()} CPU core(s), load average {os.getloadavg()[0]:.1f}")
    for workers, seconds in results.items():
        print(f"  workers {workers}: {seconds:6.2f} s  {total / seconds:6.2f} frames/s")
    print(f"  DIS one direction: {ms:.1f} ms per pair; end-point error on non-occluded pixels: "
          f"mean {mean_epe:.2f} px, median {median_epe:.2f} px")


if __name__ == '__main__':
    main()
