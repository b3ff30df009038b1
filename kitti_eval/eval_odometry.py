"""Evaluate a predicted camera trajectory against the ground truth (KITTI odometry metrics).

    python -m kitti_eval.eval_odometry --gt GT_POSES.txt --pred PRED_POSES.txt \
        [--align none|scale|6dof|7dof] [--output-dir OUT]

Both files are KITTI pose files (one line per frame: the top 3x4 of the camera-to-world pose).
The prediction is aligned to the GT (default ``7dof``: Umeyama similarity of the positions), then
``t_err`` (%) and ``r_err`` (deg/100 m) of the KITTI devkit (segments of 100..800 m), ``ate`` (m,
RMSE of the positions), ``rpe_trans`` (m) and ``rpe_rot`` (deg) (mean frame-to-frame relative pose
error) are printed.  With ``--output-dir``: ``odometry_metrics.json`` (those five numbers),
``trajectory.png`` (top view x-z, GT and aligned prediction) and ``aligned_poses.txt`` (the aligned
prediction, KITTI format).  See ``kitti_eval/odometry_metrics.py`` for the definitions.
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m kitti_eval.eval_odometry")

from fileio import atomic_open
from kitti_eval.kitti_odometry import PoseFileError, read_poses, write_poses
from kitti_eval.odometry_metrics import ALIGNMENTS, SEGMENT_LENGTHS, AlignmentError, align_trajectory, \
    odometry_errors, trajectory_distances

CLI_ERRORS = (FileNotFoundError, PoseFileError, AlignmentError, ValueError)
METRICS_FILE = 'odometry_metrics.json'
PLOT_FILE = 'trajectory.png'
ALIGNED_FILE = 'aligned_poses.txt'
TITLE_CHARS = 70


def load_trajectories(gt_path, pred_path):
    """``(gt, pred)`` ``[F,4,4]`` poses of two pose files of the same length (one-line errors otherwise)."""
    gt, pred = read_poses(gt_path), read_poses(pred_path)
    if len(gt) != len(pred):
        raise PoseFileError(f"{pred_path}: {len(pred)} poses, but the ground truth {gt_path} has {len(gt)}")
    if len(gt) < 2:
        raise PoseFileError(f"{gt_path}: a single pose; the metrics need at least 2 frames")
    return gt, pred


def segment_notice(gt, gt_name):
    """The line saying why ``t_err``/``r_err`` are missing, or None when the GT reaches the shortest segment."""
    length = trajectory_distances(gt)[-1]
    if length > min(SEGMENT_LENGTHS):
        return None
    return (f"{gt_name}: the trajectory is {length:.1f} m long, shorter than the shortest segment "
            f"({min(SEGMENT_LENGTHS)} m): t_err and r_err are not computed")


def format_report(errors, name, frames, length, align, scale):
    """Metric table of one trajectory (text)."""
    def show(value, width):
        return f"{'n/a':>{width}}" if value is None else f"{value:{width}.4f}"
    header = f"{name}: {frames} frames, {length:.1f} m, alignment {align}"
    if align in ('scale', '7dof'):
        header += f" (scale {scale:.4f})"
    return '\n'.join([header,
                      f"{'t_err (%)':>10} {'r_err (deg/100m)':>17} {'ATE (m)':>10} {'RPE trans (m)':>14} "
                      f"{'RPE rot (deg)':>14}",
                      f"{show(errors.t_err, 10)} {show(errors.r_err, 17)} {show(errors.ate, 10)} "
                      f"{show(errors.rpe_trans, 14)} {show(errors.rpe_rot, 14)}"])


def save_trajectory_plot(path, gt, aligned, title):
    """Top view (x right, z forward) of the GT and the aligned prediction, saved atomically as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt[:, 0, 3], gt[:, 2, 3], color='black', label='ground truth')
    ax.plot(aligned[:, 0, 3], aligned[:, 2, 3], color='tab:red', label='prediction (aligned)')
    ax.plot(gt[0, 0, 3], gt[0, 2, 3], 'ko', label='start')
    ax.set_xlabel('x (m)')
    ax.set_ylabel('z (m)')
    ax.set_aspect('equal', adjustable='datalim')
    ax.grid(alpha=0.3)
    ax.legend(loc='best')
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format='png', dpi=100)
    plt.close(fig)


def write_outputs(output_dir, errors, gt, aligned, title):
    """``odometry_metrics.json``, ``trajectory.png`` and ``aligned_poses.txt`` in ``output_dir``."""
    output_dir = Path(output_dir)
    with atomic_open(output_dir / METRICS_FILE) as handle:
        handle.write((json.dumps(errors.as_dict(), indent=2) + '\n').encode())
    save_trajectory_plot(output_dir / PLOT_FILE, gt, aligned, title)
    write_poses(output_dir / ALIGNED_FILE, aligned)


def evaluate_trajectory(gt, pred, align='7dof', name='trajectory', output_dir=None):
    """Align, compute, print and (with ``output_dir``) save the metrics of one trajectory.

    Args:
        gt, pred: ``[F,4,4]`` camera-to-world poses.  name: what the printed lines call the GT.
    Returns:
        :class:`~kitti_eval.odometry_metrics.OdometryErrors`.
    """
    aligned, similarity = align_trajectory(gt, pred, align)
    errors = odometry_errors(gt, aligned)
    notice = segment_notice(gt, name)
    if notice:
        print(notice)
    length = trajectory_distances(gt)[-1]
    print(format_report(errors, name, len(gt), length, align, similarity.scale))
    if output_dir is not None:
        label = name if len(name) <= TITLE_CHARS else '...' + name[3 - TITLE_CHARS:]
        segments = '' if errors.t_err is None else f", t_err {errors.t_err:.2f} %, r_err {errors.r_err:.2f} deg/100m"
        title = f"{label}\nATE {errors.ate:.3f} m{segments} ({align} alignment)"
        write_outputs(output_dir, errors, gt, aligned, title)
        print(f"wrote {Path(output_dir) / METRICS_FILE}, {PLOT_FILE} and {ALIGNED_FILE}")
    return errors


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--gt', required=True, help='ground-truth KITTI pose file')
    parser.add_argument('--pred', required=True, help='predicted KITTI pose file (same number of frames)')
    parser.add_argument('--align', default='7dof', choices=ALIGNMENTS,
                        help='alignment of the prediction to the GT before the metrics (default %(default)s)')
    parser.add_argument('--output-dir', default=None,
                        help=f'write {METRICS_FILE}, {PLOT_FILE} and {ALIGNED_FILE} here')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        gt, pred = load_trajectories(args.gt, args.pred)
        evaluate_trajectory(gt, pred, args.align, args.gt, args.output_dir)
    except CLI_ERRORS as exc:
        sys.exit(f"error: {exc}")


if __name__ == '__main__':
    main()
