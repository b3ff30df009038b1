"""Seconds per frame of each stage of the demo (networks, point clouds, figures) and the whole run.

Usage: python -m benchmarks.bench_demo [--data ROOT/image/SCENE] [--frames 6 --height 128 --width 416 --device cpu]
Without ``--data`` a synthetic KITTI-VIS scene of ``--frames`` frames is generated in a temporary folder.
Networks are untrained (speed does not depend on the weights); ``--mni 3`` as in scripts/run_demo.sh.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import demo
import demo_odometry
from data import synthetic
from devices import select_device
from fileio import new_run_folder


def timed(fn, *args):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def synthetic_scene(folder, frames, height, width):
    """Write one synthetic scene and return its image folder."""
    scene = synthetic.render_scene(seed=0, index=0, height=height, width=width, frames=frames)
    synthetic.write_kitti_vis([scene], folder)
    return Path(folder) / 'image' / scene.name


def measure(scene_dir, out_dir, mni, device_name):
    """Per-stage timings of one demo run on ``scene_dir``: ``{stage: seconds}`` and the frame count."""
    args = demo.build_parser().parse_args(['--data', str(scene_dir), '--mni', str(mni), '--device', device_name,
                                           '--output-dir', str(out_dir), '--save-fig'])
    scene = demo.find_scene(args.data)
    device = select_device(args.device)
    nets = demo.build_networks(args, device)
    inference, t_networks = timed(demo.run_networks, scene, nets, mni, device)
    cam_to_world = demo_odometry.chain_trajectory(inference.poses)
    ids = demo_odometry.assign_track_ids(inference.matches, len(scene.frames))
    tracks, t_tracks = timed(demo.build_tracks, scene, inference, cam_to_world, ids)
    folder = new_run_folder(Path(out_dir) / 'bench', create=True)
    samples, t_clouds = timed(demo.write_point_clouds, scene, inference, cam_to_world, folder)
    _, t_figures = timed(demo.write_figures, scene, inference, cam_to_world, tracks, ids, samples, folder, args)
    return {'networks': t_networks, 'tracks': t_tracks, 'point clouds': t_clouds, 'figures + GIF': t_figures}, \
        len(scene.frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default=None, help='scene folder ROOT/image/SCENE (default: a synthetic scene)')
    parser.add_argument('--frames', type=int, default=6)
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=416)
    parser.add_argument('--mni', type=int, default=3)
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='cpu')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene_dir = args.data or synthetic_scene(Path(tmp) / 'vis', args.frames, args.height, args.width)
        timings, frames = measure(scene_dir, Path(tmp) / 'out', args.mni, args.device)
    print(f"demo on {frames} frames of {scene_dir if args.data else 'a synthetic scene'}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'stage':<16}{'total s':>10}{'s/frame':>10}")
    for stage, seconds in timings.items():
        print(f"{stage:<16}{seconds:>10.2f}{seconds / frames:>10.3f}")
    total = sum(timings.values())
    print(f"{'all':<16}{total:>10.2f}{total / frames:>10.3f}")


if __name__ == '__main__':
    main()
