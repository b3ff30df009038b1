"""The official release's prediction step, kept so its command keeps working.

    python kitti_eval/save_depth.py --img-height 256 --img-width 832 --pretrained-dispnet CKPT \
        --dataset-dir KITTI_RAW --dataset-list kitti_eval/test_files_eigen.txt --output-dir OUT

is ``python test_disp.py ... --no-eval``: it only writes ``OUT/predictions.npy``; evaluate it with
``kitti_eval/eval_depth.py``.  Every option of ``test_disp.py`` is accepted.
"""
import sys
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import test_disp  # noqa: E402


def main(argv=None):
    test_disp.main([*(sys.argv[1:] if argv is None else argv), '--no-eval'])


if __name__ == '__main__':
    main()
