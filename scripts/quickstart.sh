#!/bin/sh
# Quick start: from a fresh clone, on the CPU, in about 10-15 minutes on 2 cores:
#   1. create .venv and install the pinned requirements,
#   2. render the synthetic driving world (KITTI-VIS layout for training, a held-out raw-KITTI drive for testing),
#   3. train Insta-DM on it (randomly initialised networks, official loss settings),
#   4. evaluate depth on the held-out drive with test_disp.py, for the untrained and the trained DispResNet,
#      and the trained EgoPoseNet on a synthetic KITTI odometry drive with test_pose.py,
#   5. run the unified visual odometry demo on a validation scene (it holds moving cars: --val-moving-cars),
#   6. print where everything is.
# Safe to run twice (data are re-rendered, each training run gets its own folder).
# Environment overrides (CI runs a reduced version): QS_OUT, QS_HEIGHT, QS_WIDTH, QS_SCENES, QS_FRAMES,
# QS_EPOCHS, QS_EPOCH_SIZE, QS_BATCH, QS_MNI, QS_WORKERS, QS_DEVICE, QS_DEMO_FRAMES, QS_ODOM_FRAMES,
# QS_VAL_MOVING_CARS, QS_SKIP_INSTALL=1, QS_PYTHON (the interpreter to run with; default .venv/bin/python).
set -eu
cd "$(dirname "$0")/.."
OUT=${QS_OUT:-outputs/quickstart}
HEIGHT=${QS_HEIGHT:-128}
WIDTH=${QS_WIDTH:-416}
SCENES=${QS_SCENES:-4}
FRAMES=${QS_FRAMES:-20}
EPOCHS=${QS_EPOCHS:-6}
EPOCH_SIZE=${QS_EPOCH_SIZE:-10}
BATCH=${QS_BATCH:-4}
MNI=${QS_MNI:-2}
WORKERS=${QS_WORKERS:-2}
DEVICE=${QS_DEVICE:-auto}
DEMO_FRAMES=${QS_DEMO_FRAMES:-8}
ODOM_FRAMES=${QS_ODOM_FRAMES:-90}   # about 110 m: long enough for the devkit's 100 m segments
VAL_MOVING_CARS=${QS_VAL_MOVING_CARS:-2}

if [ "${QS_SKIP_INSTALL:-0}" != 1 ]; then
    echo "== 1/6 virtual environment .venv and requirements"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        --config-settings editable_mode=compat -e .
fi
PY=${QS_PYTHON:-.venv/bin/python}

echo "== 2/6 synthetic data: $SCENES scenes x $FRAMES frames at ${HEIGHT}x${WIDTH} (train) + a held-out drive (test)"
$PY -m data.synthetic --out "$OUT/synthetic" --layout vis --scenes "$SCENES" --frames "$FRAMES" \
    --height "$HEIGHT" --width "$WIDTH" --seed 0 --overwrite --val-moving-cars "$VAL_MOVING_CARS"
$PY -m data.synthetic --out "$OUT/synthetic_test" --layout raw --scenes 1 --frames "$FRAMES" \
    --height "$HEIGHT" --width "$WIDTH" --seed 100 --overwrite
$PY -m data.synthetic --out "$OUT/synthetic_odometry" --layout odometry --scenes 1 --frames "$ODOM_FRAMES" \
    --height "$HEIGHT" --width "$WIDTH" --seed 4 --overwrite

echo "== 3/6 training ($EPOCHS epochs x $EPOCH_SIZE iterations, batch $BATCH, mni $MNI)"
$PY -c "import torch, models, checkpoint_io; torch.manual_seed(0); \
checkpoint_io.save_checkpoint('$OUT/untrained_dispnet.pth.tar', models.DispResNet(18).state_dict(), 0)"
$PY train.py "$OUT/synthetic/vis" --name quickstart --checkpoint-root "$OUT/checkpoints" --with-pretrain 0 \
    -b "$BATCH" -j "$WORKERS" --epochs "$EPOCHS" --epoch-size "$EPOCH_SIZE" -mni "$MNI" \
    -p 2.0 -c 1.0 -s 0.1 -o 0.02 -mc 0.1 --with-ssim --with-mask --with-auto-mask --with-gt \
    --device "$DEVICE" --seed 0 --image-freq 10
RUN=$(ls -td "$OUT"/checkpoints/quickstart/*/ | head -n 1)
RUN=${RUN%/}

echo "== 4/6 depth evaluation on the held-out synthetic drive (test_disp.py)"
for NET in untrained trained; do
    if [ "$NET" = untrained ]; then CKPT="$OUT/untrained_dispnet.pth.tar"; else CKPT="$RUN/dispnet_model_best.pth.tar"; fi
    $PY test_disp.py --pretrained-dispnet "$CKPT" --dataset-dir "$OUT/synthetic_test/raw" \
        --dataset-list "$OUT/synthetic_test/raw/test_files.txt" --output-dir "$OUT/eval_$NET" \
        --img-height "$HEIGHT" --img-width "$WIDTH" --device "$DEVICE" --no-progress
done
echo "== 4/6 ego-motion evaluation on the synthetic odometry drive (test_pose.py)"
$PY test_pose.py --pretrained-ego-pose "$RUN/ego_pose_model_best.pth.tar" --dataset-dir "$OUT/synthetic_odometry/odometry" \
    --sequences 00 --output-dir "$OUT/pose_eval" --img-height "$HEIGHT" --img-width "$WIDTH" --device "$DEVICE" --no-progress

echo "== 5/6 unified visual odometry demo on a validation scene"
VAL_SCENE=$(head -n 1 "$OUT/synthetic/vis/val.txt")
$PY demo.py --data "$OUT/synthetic/vis/image/$VAL_SCENE" --pretrained-disp "$RUN/dispnet_model_best.pth.tar" \
    --pretrained-ego-pose "$RUN/ego_pose_model_best.pth.tar" --pretrained-obj-pose "$RUN/obj_pose_model_best.pth.tar" \
    --mni "$MNI" --name quickstart --output-dir "$OUT/demo" --max-frames "$DEMO_FRAMES" --save-fig --device "$DEVICE"
DEMO=$(ls -td "$OUT"/demo/quickstart/*/ | head -n 1)

echo "== 6/6 summary"
$PY - "$OUT" "$RUN" "${DEMO%/}" <<'PYEOF'
import json, sys
out, run, demo = sys.argv[1:4]
abs_rel = {net: json.load(open(f'{out}/eval_{net}/metrics.json'))['abs_rel'] for net in ('untrained', 'trained')}
print(f"Abs Rel on the held-out synthetic drive: untrained {abs_rel['untrained']:.4f} -> trained {abs_rel['trained']:.4f}"
      f" ({'better' if abs_rel['trained'] < abs_rel['untrained'] else 'NOT better: train longer (QS_EPOCHS)'})")
odometry = json.load(open(f'{out}/pose_eval/00/odometry_metrics.json'))
snippet = json.load(open(f'{out}/pose_eval/00/snippet_ate.json'))
segments = ('no 100 m segment' if odometry['t_err'] is None else
            f"t_err {odometry['t_err']:.2f} %, r_err {odometry['r_err']:.2f} deg/100m")
print(f"ego-motion on the synthetic odometry drive: {segments}, ATE {odometry['ate']:.3f} m (7dof), "
      f"snippet ATE {snippet['mean']:.4f} +- {snippet['std']:.4f} m")
print(f"checkpoints and logs : {run}")
print(f"metric tables        : {out}/eval_trained/metrics.txt, {out}/eval_untrained/metrics.txt")
print(f"trajectory           : {out}/pose_eval/00/trajectory.png")
demo_summary = json.load(open(f'{demo}/tracks.json'))['summary']
speed = demo_summary['mean_speed']
print(f"demo                 : {demo_summary['tracked_objects']} tracked objects"
      + (f", mean speed {speed:.3f} {demo_summary['speed_unit']}" if speed is not None else ''))
print(f"demo figures, video  : {demo}")
print(f"TensorBoard          : .venv/bin/tensorboard --logdir {out}/checkpoints")
PYEOF
