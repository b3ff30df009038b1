"""Speed of the pose evaluation: kitti_eval/eval_odometry.py on sequence 09 against a perturbed copy.

    python -m benchmarks.bench_odometry [--repeats 5]

The perturbed copy (seeded) chains the GT's frame-to-frame motions with 2 % more translation, 0.02 m
of noise per step and 0.002 rad of rotation noise, then shrinks the whole trajectory to 0.4 of its size.
Prints the median time of each part in this process (reading both files, 7-DoF alignment and all
metrics, the trajectory plot) and the wall time of the whole command line (interpreter start-up and
imports included), with and without ``--output-dir``.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


import numpy as np
import torch
from scipy.spatial.transform import Rotation

from benchmarks.timing import median_seconds
from kitti_eval.eval_odometry import save_trajectory_plot
from kitti_eval.kitti_odometry import BUNDLED_GT_DIR, read_poses, write_poses
from kitti_eval.odometry_metrics import align_trajectory, chain_poses, odometry_errors

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device('cpu')


def perturbed_copy(gt, seed=0):
    """``[F,4,4]`` prediction-like trajectory: GT motions with scale drift and noise, globally shrunk."""
    rng = np.random.default_rng(seed)
    steps = np.linalg.inv(gt[1:]) @ gt[:-1]                       # X_k+1 = T X_k
    steps[:, :3, :3] = steps[:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, 0.002, (len(steps), 3))).as_matrix()
    steps[:, :3, 3] = 1.02 * steps[:, :3, 3] + rng.normal(0, 0.02, (len(steps), 3))
    pred = chain_poses(steps)
    pred[:, :3, 3] *= 0.4
    return pred


def command_seconds(argv):
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / 'kitti_eval' / 'eval_odometry.py'), *argv], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    gt_path = BUNDLED_GT_DIR / '09.txt'
    with tempfile.TemporaryDirectory() as tmp:
        pred_path = Path(tmp) / 'pred.txt'
        write_poses(pred_path, perturbed_copy(read_poses(gt_path)))
        gt, pred = read_poses(gt_path), read_poses(pred_path)
        aligned = align_trajectory(gt, pred, '7dof')[0]
        print(f"{len(gt)} poses: {odometry_errors(gt, aligned)}")
        read = median_seconds(lambda: (read_poses(gt_path), read_poses(pred_path)), args.repeats, CPU)
        metrics = median_seconds(lambda: odometry_errors(gt, align_trajectory(gt, pred, '7dof')[0]), args.repeats, CPU)
        plot = median_seconds(lambda: save_trajectory_plot(Path(tmp) / 'plot.png', gt, aligned, 'bench'),
                              args.repeats, CPU)
        print(f"in process: read {read:.3f} s, alignment + metrics {metrics:.3f} s, plot {plot:.3f} s")
        common = ['--gt', str(gt_path), '--pred', str(pred_path)]
        full = [command_seconds(common + ['--output-dir', tmp]) for _ in range(args.repeats)]
        bare = [command_seconds(common) for _ in range(args.repeats)]
        print(f"command line: {np.median(full):.2f} s with --output-dir (json, plot, aligned poses), "
              f"{np.median(bare):.2f} s without (median of {args.repeats})")


if __name__ == '__main__':
    main()
