#!/bin/sh
# Ego-motion evaluation on KITTI odometry sequences (default 09 and 10):
#   EgoPoseNet on every pair of consecutive frames -> chained trajectory $RESULTS_DIR/NN/NN.txt,
#   full-trajectory metrics (KITTI devkit t_err / r_err, ATE, RPE) and the snippet ATE of SfMLearner / Monodepth2.
# The ground truth is DATA_ROOT/poses/NN.txt, else the bundled kitti_eval/odometry_gt/NN.txt (09, 10).
#
# Usage:  DATA_ROOT=/data/kitti_odometry EGO_POSE_NET=checkpoints/resnet18_ego_kt.tar sh scripts/run_pose_test.sh
# Every variable below can be set from the environment.
set -eu

REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)

DATA_ROOT=${DATA_ROOT:-/path/to/kitti_odometry}              # KITTI odometry: DATA_ROOT/sequences/NN/image_2/
EGO_POSE_NET=${EGO_POSE_NET:-/path/to/resnet18_ego_kt.tar}    # EgoPoseNet checkpoint
SEQUENCES=${SEQUENCES:-09 10}
RESULTS_DIR=${RESULTS_DIR:-outputs/pose_test}
IMG_HEIGHT=${IMG_HEIGHT:-}          # empty: the checkpoint's saved frame size, else 256x832
IMG_WIDTH=${IMG_WIDTH:-}
SEQUENCE_LENGTH=${SEQUENCE_LENGTH:-5}                         # snippet length of the snippet ATE (3 or 5)
ROTATION_MODE=${ROTATION_MODE:-}    # empty: the checkpoint's saved rotation mode, else euler
ALIGN=${ALIGN:-7dof}                                          # none | scale | 6dof | 7dof
BATCH_SIZE=${BATCH_SIZE:-8}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python3}

fail() {
    echo "error: $1" >&2
    exit 1
}
[ -d "$DATA_ROOT" ] || fail "DATA_ROOT=$DATA_ROOT is not a folder: set DATA_ROOT to the KITTI odometry root (the folder holding sequences/)"
[ -f "$EGO_POSE_NET" ] || fail "EGO_POSE_NET=$EGO_POSE_NET is not a file: set EGO_POSE_NET to an EgoPoseNet checkpoint"

# shellcheck disable=SC2086  # SEQUENCES is a list
"$PYTHON" "$REPO_DIR/test_pose.py" --pretrained-ego-pose "$EGO_POSE_NET" --dataset-dir "$DATA_ROOT" \
    --sequences $SEQUENCES --output-dir "$RESULTS_DIR" ${IMG_HEIGHT:+--img-height "$IMG_HEIGHT"} ${IMG_WIDTH:+--img-width "$IMG_WIDTH"} \
    --sequence-length "$SEQUENCE_LENGTH" ${ROTATION_MODE:+--rotation-mode "$ROTATION_MODE"} --align "$ALIGN" \
    --batch-size "$BATCH_SIZE" --device "$DEVICE"
