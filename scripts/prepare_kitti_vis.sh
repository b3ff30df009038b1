#!/bin/sh
# Regenerate KITTI-VIS (832x256) from raw KITTI: Eigen test drives left out, static frames dropped,
# DIS optical flow both ways, Mask R-CNN instance masks, velodyne GT depth for the val scenes (--with-gt).
#   KITTI_RAW=/path/to/kitti_raw OUTPUT=data/kitti_256 sh scripts/prepare_kitti_vis.sh [extra flags]
# KITTI_RAW holds 2011_09_26/ ... (each date with its calib_*.txt and DATE_drive_XXXX_sync/ folders).
# MASKS=none writes empty masks; MASKS_FROM=DIR uses precomputed masks instead of Mask R-CNN.
# Extra flags go to python -m data.prepare_train_data (e.g. --flow raft, --val-scenes 3, --device cuda).
# An interrupted run resumes where it stopped when started again with the same settings.
set -eu
cd "$(dirname "$0")/.."
KITTI_RAW=${KITTI_RAW:-/path/to/kitti_raw}
OUTPUT=${OUTPUT:-data/kitti_256}
WORKERS=${WORKERS:-2}
FLOW=${FLOW:-dis}
MASKS=${MASKS:-maskrcnn}
MASKS_FROM=${MASKS_FROM:-}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ ! -d "$KITTI_RAW" ]; then
    echo "error: KITTI_RAW=$KITTI_RAW is not a folder: set KITTI_RAW to the raw KITTI root (the folder holding 2011_09_26/ ...)" >&2
    exit 1
fi
if [ -n "$MASKS_FROM" ]; then
    set -- --masks-from "$MASKS_FROM" "$@"
else
    set -- --masks "$MASKS" "$@"
fi
exec "$PYTHON" -m data.prepare_train_data --source kitti --input "$KITTI_RAW" --output "$OUTPUT" \
    --img-width 832 --img-height 256 \
    --flow "$FLOW" --val-depth --workers "$WORKERS" "$@"
