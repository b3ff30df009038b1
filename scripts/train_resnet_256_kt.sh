#!/bin/sh
# Train Insta-DM on KITTI-VIS (832x256) with the official hyper-parameters.
#   TRAIN_SET=/path/to/kitti_256 sh scripts/train_resnet_256_kt.sh [extra train.py flags]
# Extra flags are appended, e.g. --device cpu, --resume checkpoints/NAME/TIMESTAMP, --with-pretrain 0,
# --pretrained-disp/--pretrained-ego-pose/--pretrained-obj-pose to fine-tune from Cityscapes.
set -eu
cd "$(dirname "$0")/.."
TRAIN_SET=${TRAIN_SET:-data/kitti_256}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ ! -d "$TRAIN_SET" ]; then
    echo "error: TRAIN_SET=$TRAIN_SET is not a folder: set TRAIN_SET to your KITTI-VIS dataset (see README, Datasets)" >&2
    exit 1
fi
exec "$PYTHON" train.py "$TRAIN_SET" \
    --resnet-layers 18 \
    -b 4 -p 2.0 -c 1.0 -s 0.1 -o 0.02 -mc 0.1 -hp 0 -dm 0 -mni 2 \
    --epoch-size 1000 \
    --with-ssim --with-mask --with-auto-mask --with-gt \
    --name insta_dm_kitti "$@"
