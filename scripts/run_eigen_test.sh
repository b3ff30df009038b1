#!/bin/sh
# Depth evaluation on the KITTI Eigen split (697 frames), as in the official release:
#   (1) predict depth for every listed frame -> $RESULTS_DIR/predictions.npy
#   (2) evaluate it against the velodyne ground truth -> metric table, $RESULTS_DIR/metrics.{json,txt}
#
# Usage:  DATA_ROOT=/data/kitti_raw DISP_NET=checkpoints/resnet18_disp_kt.tar sh scripts/run_eigen_test.sh
# Every variable below can be set from the environment.
set -eu

REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)

DATA_ROOT=${DATA_ROOT:-/path/to/kitti_raw}                     # raw KITTI: DATA_ROOT/2011_09_26/...
DISP_NET=${DISP_NET:-/path/to/resnet18_disp_kt.tar}           # DispResNet checkpoint
RESULTS_DIR=${RESULTS_DIR:-outputs/eigen_test}
TEST_FILE=${TEST_FILE:-$REPO_DIR/kitti_eval/test_files_eigen.txt}
GT_FILE=${GT_FILE:-outputs/gt_depths_$(basename "$TEST_FILE" .txt).npz}   # ground-truth cache
PRED_FILE=$RESULTS_DIR/predictions.npy
IMG_HEIGHT=${IMG_HEIGHT:-}          # empty: the checkpoint's saved frame size, else 256x832
IMG_WIDTH=${IMG_WIDTH:-}
RESNET_LAYERS=${RESNET_LAYERS:-}    # empty: saved in the checkpoint, else 18
BATCH_SIZE=${BATCH_SIZE:-4}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python3}

fail() {
    echo "error: $1" >&2
    exit 1
}
[ -d "$DATA_ROOT" ] || fail "DATA_ROOT=$DATA_ROOT is not a folder: set DATA_ROOT to the raw KITTI root (the folder holding 2011_09_26/ ...)"
[ -f "$DISP_NET" ] || fail "DISP_NET=$DISP_NET is not a file: set DISP_NET to a DispResNet checkpoint"
[ -f "$TEST_FILE" ] || fail "TEST_FILE=$TEST_FILE is not a file: set TEST_FILE to a file list"

### (1) Predict depth and save it to $PRED_FILE ###
"$PYTHON" "$REPO_DIR/test_disp.py" ${IMG_HEIGHT:+--img-height "$IMG_HEIGHT"} ${IMG_WIDTH:+--img-width "$IMG_WIDTH"} \
    ${RESNET_LAYERS:+--resnet-layers "$RESNET_LAYERS"} --batch-size "$BATCH_SIZE" --device "$DEVICE" --no-eval \
    --pretrained-dispnet "$DISP_NET" --dataset-dir "$DATA_ROOT" --dataset-list "$TEST_FILE" --output-dir "$RESULTS_DIR"

### (2) Evaluate depth with the ground truth (cached in $GT_FILE after the first run) ###
PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m kitti_eval.eval_depth --kitti_dir "$DATA_ROOT" --pred_file "$PRED_FILE" \
    --test_file_list "$TEST_FILE" --gt_file "$GT_FILE" --output_dir "$RESULTS_DIR"
