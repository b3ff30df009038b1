"""The official release's prediction step (its ``kitti_eval/save_depth.py``), run from the repository root as

    python -m kitti_eval.save_depth --img-height 256 --img-width 832 --pretrained-dispnet CKPT \
        --dataset-dir KITTI_RAW --dataset-list kitti_eval/test_files_eigen.txt --output-dir OUT

It is ``python test_disp.py ... --no-eval``: it only writes ``OUT/predictions.npy``; evaluate it with
``python -m kitti_eval.eval_depth``.  Every option of ``test_disp.py`` is accepted.
"""
import importlib.util
import sys

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m kitti_eval.save_depth")

import test_disp  # noqa: E402


def main(argv=None):
    test_disp.main([*(sys.argv[1:] if argv is None else argv), '--no-eval'])


if __name__ == '__main__':
    main()
