"""Evaluate predicted depth maps on a KITTI file list (the Eigen split by default).

    python -m kitti_eval.eval_depth --kitti_dir KITTI_RAW --pred_file OUT/predictions.npy \
        [--test_file_list kitti_eval/test_files_eigen.txt --min_depth 1e-3 --max_depth 80 \
         --gt_file GT.npz --output_dir OUT --no_median_scaling --vel_depth]

``predictions.npy`` is ``[N,h,w]`` depth in list order, at any resolution: each map is resized
(bilinear) to its ground truth's size before the metrics are computed.
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m kitti_eval.eval_depth")

import cv2
import numpy as np
from tqdm import tqdm

from fileio import atomic_open
from kitti_eval.depth_metrics import TABLE_METRICS, NoValidPixelsError, average_errors, compute_errors_and_scale, \
    format_table
from kitti_eval.gt_cache import ground_truth_depths
from kitti_eval.kitti_raw import KittiFormatError, missing_file, read_file_list

DEFAULT_TEST_LIST = Path(__file__).resolve().parent / 'test_files_eigen.txt'
CLI_ERRORS = (FileNotFoundError, KittiFormatError, ValueError)


class PredictionFileError(ValueError):
    """A predictions file that does not fit the file list (one-line message)."""


def load_predictions(path, count):
    """``[N,h,w]`` float32 depth maps of ``path``, checked to hold ``count`` finite maps."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, 'predictions file')
    try:
        predictions = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise PredictionFileError(f"{path}: not a readable .npy array ({exc})") from None
    if predictions.ndim != 3:
        raise PredictionFileError(f"{path}: expected depth maps [N,h,w], got shape {list(predictions.shape)}")
    if len(predictions) != count:
        raise PredictionFileError(f"{path}: holds {len(predictions)} depth maps but the file list has {count}")
    if not np.isfinite(predictions).all():
        raise PredictionFileError(f"{path}: contains non-finite depth values")
    return predictions.astype(np.float32, copy=False)


def resize_depth(depth, shape):
    """Bilinear resize of a ``[h,w]`` depth map to ``shape = (H, W)``: ``[H,W]`` float32."""
    height, width = shape
    return cv2.resize(np.ascontiguousarray(depth, dtype=np.float32), (int(width), int(height)),
                      interpolation=cv2.INTER_LINEAR)


def evaluate_depths(gt_maps, predictions, files, min_depth=1e-3, max_depth=80, median_scaling=True,
                    progress=True):
    """Mean errors of ``predictions`` (``[N,h,w]``) against the ``[H,W]`` GT maps, and the scales used.

    Returns:
        (DepthErrors averaged over images, ``[N]`` array of per-image median scales (1 when off)).
    """
    per_image, scales = [], []
    for entry, gt, pred in tqdm(zip(files, gt_maps, predictions), total=len(files), desc='evaluate',
                                unit='img', disable=not progress):
        pred = resize_depth(pred, gt.shape)
        try:
            errors, scale = compute_errors_and_scale(gt, pred, min_depth, max_depth, median_scaling=median_scaling)
        except NoValidPixelsError as exc:
            raise NoValidPixelsError(f"{entry}: {exc}") from None
        per_image.append(errors)
        scales.append(scale)
    return average_errors(per_image), np.array(scales)


def metrics_report(errors, scales, median_scaling, count):
    """The text printed and saved: settings line, scale statistics and the metric table."""
    lines = [f"{count} images, " + ('per-image median scaling' if median_scaling else 'no median scaling')]
    if median_scaling:
        lines.append(f"scaling ratios: median {np.median(scales):.3f}, std {np.std(scales / np.median(scales)):.3f}")
    lines.append(format_table(errors))
    return '\n'.join(lines)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (never a half-written file)."""
    with atomic_open(path) as handle:
        handle.write(text.encode())


def write_metrics(output_dir, errors, report):
    """``OUTPUT/metrics.json`` (the paper's seven metrics) and ``OUTPUT/metrics.txt`` (the report)."""
    metrics = {name: getattr(errors, name) for name in TABLE_METRICS}
    atomic_write_text(Path(output_dir) / 'metrics.json', json.dumps(metrics, indent=2) + '\n')
    atomic_write_text(Path(output_dir) / 'metrics.txt', report + '\n')


def evaluate_and_report(predictions, files, kitti_dir, gt_file=None, min_depth=1e-3, max_depth=80,
                        median_scaling=True, velodyne_depth=False, output_dir=None, progress=True):
    """Ground truth (cached or projected), metrics, printed table and optional metric files.

    Returns the mean DepthErrors.
    """
    if kitti_dir is None and (gt_file is None or not Path(gt_file).is_file()):
        raise FileNotFoundError("no ground truth: give --kitti_dir (raw KITTI root) or an existing --gt_file")
    gt_maps = ground_truth_depths(kitti_dir, files, gt_file, velodyne_depth, progress)
    errors, scales = evaluate_depths(gt_maps, predictions, files, min_depth, max_depth, median_scaling, progress)
    report = metrics_report(errors, scales, median_scaling, len(files))
    print(report)
    if output_dir is not None:
        write_metrics(output_dir, errors, report)
        print(f"wrote {Path(output_dir) / 'metrics.json'} and metrics.txt")
    return errors


def add_metric_options(parser, spellings):
    """Options shared by eval_depth.py and test_disp.py; ``spellings`` maps a name to its flags."""
    parser.add_argument(*spellings('min_depth'), dest='min_depth', type=float, default=1e-3,
                        help='smallest GT depth evaluated and lower clamp of the prediction (default 1e-3)')
    parser.add_argument(*spellings('max_depth'), dest='max_depth', type=float, default=80.0,
                        help='largest GT depth evaluated and upper clamp of the prediction (default 80)')
    parser.add_argument(*spellings('no_median_scaling'), dest='median_scaling', action='store_false',
                        help='do not scale each prediction by median(gt)/median(pred) (metric-scale models)')
    parser.add_argument(*spellings('gt_file'), dest='gt_file', default=None,
                        help='cached ground truth (.npz of export_gt_depth.py); used when it exists, '
                             'written from the raw data when it does not')
    parser.add_argument(*spellings('vel_depth'), dest='velodyne_depth', action='store_true',
                        help='GT depth = velodyne x (the SfMLearner-lineage evaluation code) instead of '
                             'the camera depth')


def both_spellings(name):
    """``--name_with_underscores`` and ``--name-with-dashes``."""
    return ['--' + name, '--' + name.replace('_', '-')]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(*both_spellings('kitti_dir'), dest='kitti_dir', default=None,
                        help='raw KITTI root (holds DATE/DATE_drive_XXXX_sync/...)')
    parser.add_argument(*both_spellings('pred_file'), dest='pred_file', required=True,
                        help='predictions.npy: [N,h,w] depth maps in list order')
    parser.add_argument(*both_spellings('test_file_list'), dest='test_file_list', default=str(DEFAULT_TEST_LIST),
                        help='file list (default: kitti_eval/test_files_eigen.txt)')
    parser.add_argument(*both_spellings('output_dir'), dest='output_dir', default=None,
                        help='write metrics.json and metrics.txt here')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bars')
    add_metric_options(parser, both_spellings)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        files = read_file_list(args.test_file_list)
        predictions = load_predictions(args.pred_file, len(files))
        evaluate_and_report(predictions, files, args.kitti_dir, args.gt_file, args.min_depth, args.max_depth,
                            args.median_scaling, args.velodyne_depth, args.output_dir, args.progress)
    except CLI_ERRORS as exc:
        sys.exit(f"error: {exc}")


if __name__ == '__main__':
    main()
