"""Export the ground truth of a KITTI file list to one compressed ``.npz`` (see ``gt_cache.py``).

    python -m kitti_eval.export_gt_depth --kitti_dir KITTI_RAW \
        [--test_file_list kitti_eval/test_files_eigen.txt] --output outputs/gt_depths_eigen.npz

``eval_depth.py --gt_file`` and ``test_disp.py --gt-file`` then read it instead of the raw scans.
"""
import argparse
import importlib.util
import sys

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m kitti_eval.export_gt_depth")

from kitti_eval.eval_depth import CLI_ERRORS, DEFAULT_TEST_LIST, both_spellings
from kitti_eval.gt_cache import generate_gt_depths, save_gt_depths
from kitti_eval.kitti_raw import read_file_list


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(*both_spellings('kitti_dir'), dest='kitti_dir', required=True,
                        help='raw KITTI root (holds DATE/DATE_drive_XXXX_sync/...)')
    parser.add_argument(*both_spellings('test_file_list'), dest='test_file_list', default=str(DEFAULT_TEST_LIST),
                        help='file list (default: kitti_eval/test_files_eigen.txt)')
    parser.add_argument('--output', '-o', required=True, help='.npz file to write')
    parser.add_argument(*both_spellings('vel_depth'), dest='velodyne_depth', action='store_true',
                        help='store velodyne x instead of the camera depth')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bar')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        files = read_file_list(args.test_file_list)
        depth_maps = generate_gt_depths(args.kitti_dir, files, args.velodyne_depth, args.progress)
        save_gt_depths(args.output, files, depth_maps, args.velodyne_depth)
    except CLI_ERRORS as exc:
        sys.exit(f"error: {exc}")
    points = sum(int((m > 0).sum()) for m in depth_maps)
    print(f"wrote {args.output}: ground truth of {len(files)} images ({points} lidar pixels)")


if __name__ == '__main__':
    main()
