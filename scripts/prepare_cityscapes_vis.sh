#!/bin/sh
# Build Cityscapes-VIS (frames resized to 832x342, bottom quarter with the car hood cropped: 832x256)
# from the Cityscapes video sequences, with DIS optical flow both ways and Mask R-CNN instance masks.
#   CITYSCAPES=/path/to/cityscapes OUTPUT=data/cityscapes_256 sh scripts/prepare_cityscapes_vis.sh [extra flags]
# CITYSCAPES holds leftImg8bit_sequence/train/CITY/*.png and camera/train/CITY/*_camera.json.
# MASKS=none writes empty masks; MASKS_FROM=DIR uses precomputed masks instead of Mask R-CNN.
# Extra flags go to python -m data.prepare_train_data (e.g. --flow raft, --cityscapes-splits train val).
# An interrupted run resumes where it stopped when started again with the same settings.
set -eu
cd "$(dirname "$0")/.."
CITYSCAPES=${CITYSCAPES:-/path/to/cityscapes}
OUTPUT=${OUTPUT:-data/cityscapes_256}
WORKERS=${WORKERS:-2}
FLOW=${FLOW:-dis}
MASKS=${MASKS:-maskrcnn}
MASKS_FROM=${MASKS_FROM:-}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ ! -d "$CITYSCAPES/leftImg8bit_sequence" ]; then
    echo "error: CITYSCAPES=$CITYSCAPES has no leftImg8bit_sequence/ folder: set CITYSCAPES to the Cityscapes root" >&2
    exit 1
fi
if [ -n "$MASKS_FROM" ]; then
    set -- --masks-from "$MASKS_FROM" "$@"
else
    set -- --masks "$MASKS" "$@"
fi
exec "$PYTHON" -m data.prepare_train_data --source cityscapes --input "$CITYSCAPES" --output "$OUTPUT" \
    --img-width 832 --img-height 256 \
    --flow "$FLOW" --workers "$WORKERS" "$@"
