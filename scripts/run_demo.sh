#!/bin/sh
# Unified visual odometry demo, as in the official release: depth, ego-motion and object motion of
# one KITTI-VIS / Cityscapes-VIS scene -> outputs/$NAME/TIMESTAMP/ (figures, demo.gif, PLY point
# clouds, trajectory.txt, tracks.json).
#
# Usage:  SCENE=/data/kitti_vis/image/2011_09_26_drive_0005_sync_02 \
#         PRETRAINED=checkpoints/kitti_vis/11-24-05:00:00 sh scripts/run_demo.sh
#
# SCENE       scene folder ROOT/image/SCENE (frames + cam.txt); ROOT/segmentation/SCENE and
#             ROOT/flow_f|flow_b/SCENE are found from it.
# PRETRAINED  a train.py run folder with dispnet_*, ego_pose_*, obj_pose_*.pth.tar; CHECKPOINT
#             picks model_best (default when present) or checkpoint (the last epoch).
#             PRETRAINED= (empty) runs untrained networks.
# DISP_NET, EGO_POSE_NET, OBJ_POSE_NET  the three checkpoint files (official ones included),
#             instead of PRETRAINED.
# Every variable below can be set from the environment.
set -eu

REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)

SCENE=${SCENE:-/path/to/kitti_vis/image/SCENE}
if [ -z "${DISP_NET:-}${EGO_POSE_NET:-}${OBJ_POSE_NET:-}" ]; then
    PRETRAINED=${PRETRAINED-/path/to/checkpoints/NAME/TIMESTAMP}
else
    PRETRAINED=${PRETRAINED:-}
fi
CHECKPOINT=${CHECKPOINT:-}
NAME=${NAME:-demo}
MNI=${MNI:-3}
MAX_FRAMES=${MAX_FRAMES:-0}
RESNET_LAYERS=${RESNET_LAYERS:-}    # empty: saved in the checkpoints, else 18
DEVICE=${DEVICE:-auto}
OUTPUT_DIR=${OUTPUT_DIR:-outputs}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_DIR/.venv/bin/python" ]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi

fail() {
    echo "error: $1" >&2
    exit 1
}
[ -d "$SCENE" ] || fail "SCENE=$SCENE is not a folder: set SCENE to a scene folder ROOT/image/SCENE (frames + cam.txt)"

if [ -n "$PRETRAINED" ]; then
    [ -d "$PRETRAINED" ] || fail "PRETRAINED=$PRETRAINED is not a folder: set PRETRAINED to a train.py run folder \
(dispnet_*.pth.tar, ego_pose_*.pth.tar, obj_pose_*.pth.tar), or PRETRAINED= for untrained networks"
    if [ -z "$CHECKPOINT" ]; then
        if [ -f "$PRETRAINED/dispnet_model_best.pth.tar" ]; then CHECKPOINT=model_best; else CHECKPOINT=checkpoint; fi
    fi
    DISP_NET=${DISP_NET:-$PRETRAINED/dispnet_$CHECKPOINT.pth.tar}
    EGO_POSE_NET=${EGO_POSE_NET:-$PRETRAINED/ego_pose_$CHECKPOINT.pth.tar}
    OBJ_POSE_NET=${OBJ_POSE_NET:-$PRETRAINED/obj_pose_$CHECKPOINT.pth.tar}
fi
set --
for pair in "disp:${DISP_NET:-}" "ego-pose:${EGO_POSE_NET:-}" "obj-pose:${OBJ_POSE_NET:-}"; do
    flag=${pair%%:*}
    file=${pair#*:}
    if [ -n "$file" ]; then
        [ -f "$file" ] || fail "$file: checkpoint not found (--pretrained-$flag)"
        set -- "$@" "--pretrained-$flag" "$file"
    fi
done

"$PYTHON" "$REPO_DIR/demo.py" --data "$SCENE" "$@" --mni "$MNI" --name "$NAME" --output-dir "$OUTPUT_DIR" \
    --max-frames "$MAX_FRAMES" ${RESNET_LAYERS:+--resnet-layers "$RESNET_LAYERS"} --device "$DEVICE" --save-fig
