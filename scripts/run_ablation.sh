#!/bin/sh
# Ablation of Insta-DM on the synthetic world (issue 18): what the instance-aware projection buys.
#
#   DATA=VIS_ROOT OUT=DIR STEPS=N SEEDS="0 1 2" HEIGHT=H WIDTH=W BATCH=B bash scripts/run_ablation.sh
#
# Trains every configuration with every seed on the same data, steps and batch (train.py, one process per
# run), evaluates each final checkpoint with python -m experiments.eval_synthetic and aggregates them with
# python -m experiments.ablation_results into OUT/results.json, OUT/results.md and OUT/results.png.
#   full         the official loss settings, -mni $MNI
#   rigid        -mni 0 (no instances: the rigid model)
#   no_mof       -mc 0 (no motion-field consistency)
#   no_obj_size  -o 0 (no object-size term)
#   obj_size_W   -mni $MNI -o W (the full model with the object-size weight W instead of the official 0.02)
# Resumable: a configuration/seed whose OUT/runs/CONFIG/seedS/metrics.json exists is skipped; an interrupted
# training continues from its last epoch (train.py --resume), a finished one that was not evaluated is only
# evaluated; run it again after any interruption.
# Variables (defaults): NAME (synthetic), OUT (experiments/results/$NAME), DATA (rendered into $OUT/data/vis:
# SCENES scenes x FRAMES frames at HEIGHTxWIDTH, seed 0), STEPS (300), EPOCH_SIZE (20, steps between
# checkpoints and validations; keep it <= the batches of one epoch), SEEDS ("0 1 2"), HEIGHT (96), WIDTH (320),
# BATCH (4), MNI (3), SCENES (10), FRAMES (12), CONFIGS ("full rigid no_mof no_obj_size"), DEVICE (auto),
# WORKERS (2), PY (.venv/bin/python, else python3), EXTRA_FLAGS (more train.py flags for every configuration,
# e.g. "--amp bf16"), DEPTH_SCALE (1: the official objective; another value is passed as --depth-scale to
# train.py: see README, "Science"), ANTISYMMETRIC (0: the official EgoPoseNet; 1 passes --antisymmetric-ego-pose
# to train.py). The evaluation reads both from the checkpoints' saved config. TEST_DATA (none): a second
# synthetic KITTI-VIS folder (a held-out world, e.g. another --seed with more scenes); every run whose
# checkpoints are still there is also evaluated on its validation scenes into OUT/runs/CONFIG/seedS/test/ and
# aggregated into OUT/test_results.{json,md,png}.
# JOBS (1): runs at once. Runs go seed by seed, the configurations of a seed one after the other; above 1 each run
# that is not finished goes to the background with its output appended to OUT/logs/CONFIG_seedS.log, in groups of
# JOBS (e.g. JOBS=2 OMP_NUM_THREADS=1 on two cores, or all the runs at once on a GPU); the runner waits for a group
# before it starts the next, aggregates what finished and exits 1 naming any run that failed. Ctrl-C or SIGTERM
# stops the background runs too (their training saves a checkpoint and resumes when the runner is called again).
# PRUNE (0): 1 deletes a run's checkpoints (OUT/runs/CONFIG/seedS/checkpoints, several GB) once it is evaluated
# on DATA and TEST_DATA; its results, validation_log.csv and steps.txt stay (the figures' frame row then shows
# the depth of no configuration whose every seed was pruned).
# Each evaluation also writes car_kinds.json beside metrics.json: depth and object motion by car kind. Each
# finished run also keeps its per-epoch validation curve (validation_log.csv, train.py's progress_log_summary.csv)
# and its trained steps (steps.txt) in its seed folder, and every run its training wall time in seconds
# (train_seconds.txt: summed over resumes; a training that was interrupted counts until its last checkpoint).
# Each seed folder records what its training was run with (train_settings.txt: the train.py flags shared by every
# configuration and seed, without those of how it runs: device, workers, --channels-last, --compile, ...; and the
# training world) and where (machines.txt: a line per machine, with those flags); the runner stops before it starts anything when a seed folder of OUT was trained with
# other settings than this invocation's (python -m experiments.run_record).
set -eu
cd "$(dirname "$0")/.."
NAME=${NAME:-synthetic}
OUT=${OUT:-experiments/results/$NAME}
STEPS=${STEPS:-300}
EPOCH_SIZE=${EPOCH_SIZE:-20}
SEEDS=${SEEDS:-"0 1 2"}
HEIGHT=${HEIGHT:-96}
WIDTH=${WIDTH:-320}
BATCH=${BATCH:-4}
MNI=${MNI:-3}
SCENES=${SCENES:-10}
FRAMES=${FRAMES:-12}
CONFIGS=${CONFIGS:-"full rigid no_mof no_obj_size"}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-2}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
USER_FLAGS=$EXTRA_FLAGS
DEPTH_SCALE=${DEPTH_SCALE:-1}
ANTISYMMETRIC=${ANTISYMMETRIC:-0}
TEST_DATA=${TEST_DATA:-}
PRUNE=${PRUNE:-0}
JOBS=${JOBS:-1}
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
case $JOBS in
    ''|*[!0-9]*) JOBS_OK=0 ;;
    *) JOBS_OK=$(( JOBS >= 1 )) ;;
esac
[ "$JOBS_OK" = 1 ] || { echo "error: JOBS=$JOBS: a number of runs at once (>= 1) is expected" >&2; exit 2; }
[ "$EPOCH_SIZE" -le "$STEPS" ] || EPOCH_SIZE=$STEPS
[ "$DEPTH_SCALE" = 1 ] || EXTRA_FLAGS="$EXTRA_FLAGS --depth-scale $DEPTH_SCALE"
[ "$ANTISYMMETRIC" = 0 ] || EXTRA_FLAGS="$EXTRA_FLAGS --antisymmetric-ego-pose"
EPOCHS=$(( (STEPS + EPOCH_SIZE - 1) / EPOCH_SIZE ))
# the train.py flags every configuration and seed shares: recorded with the training world in each seed folder
# (train_settings.txt, without the flags of how it runs: device, workers, ...; experiments/run_record.py)
COMMON="--with-pretrain 0 -b $BATCH -j $WORKERS --epochs $EPOCHS --epoch-size $EPOCH_SIZE -p 2.0 -c 1.0 -s 0.1 \
-o 0.02 -mc 0.1 -hp 0 -dm 0 --with-ssim --with-mask --with-auto-mask --with-gt --device $DEVICE --image-freq 0 $EXTRA_FLAGS"

config_flags() {
    case "$1" in
        full) echo "-mni $MNI" ;;
        rigid) echo "-mni 0" ;;
        no_mof) echo "-mni $MNI -mc 0" ;;
        no_obj_size) echo "-mni $MNI -o 0" ;;
        obj_size_*[!0-9.]*|obj_size_) echo "error: configuration '$1': obj_size_W needs a number W" >&2; exit 2 ;;
        obj_size_*) echo "-mni $MNI -o ${1#obj_size_}" ;;
        *) echo "error: unknown configuration '$1' in CONFIGS (full, rigid, no_mof, no_obj_size, obj_size_W)" >&2
           exit 2 ;;
    esac
}

config_mni() {
    if [ "$1" = rigid ]; then echo 0; else echo "$MNI"; fi
}

# field $2 (epoch, n_iter) of the checkpoint set run folder $1 has saved (its checkpoint_set.json; 0 without one)
checkpoint_set_field() {
    $PY -c 'import json, sys
try:
    print(int(json.load(open(sys.argv[1]))[sys.argv[2]]))
except (OSError, ValueError, KeyError, TypeError):
    print(0)' "$1/checkpoint_set.json" "$2"
}

trained_epochs() {
    checkpoint_set_field "$1" epoch
}

# the Unix time of the last change of file $1
modified_at() {
    $PY -c 'import os, sys; print(int(os.path.getmtime(sys.argv[1])))' "$1"
}

# close the training time of seed folder $1 (run folder $2): the training started at the time in
# train_started.txt ended with the run's last save (its checkpoint_set.json; also after an interruption or a
# crash): that time is added to train_seconds.txt
close_training_time() {
    [ -f "$1/train_started.txt" ] || return 0
    STARTED_AT=$(cat "$1/train_started.txt")
    ENDED_AT=$STARTED_AT
    [ ! -f "$2/checkpoint_set.json" ] || ENDED_AT=$(modified_at "$2/checkpoint_set.json")
    SPENT=$(cat "$1/train_seconds.txt" 2>/dev/null || echo 0)
    [ "$ENDED_AT" -lt "$STARTED_AT" ] || SPENT=$(( SPENT + ENDED_AT - STARTED_AT ))
    echo "$SPENT" > "$1/train_seconds.txt"
    rm -f "$1/train_started.txt"
}

# the newest run folder of a seed that holds a training state (empty when none)
last_run() {
    for run in $(ls -td "$1"/checkpoints/run/*/ 2>/dev/null); do
        if [ -f "${run}training_state.pth.tar" ]; then echo "${run%/}"; return; fi
    done
}

if [ -z "${DATA:-}" ]; then
    DATA=$OUT/data/vis
    if [ ! -f "$DATA/synthetic_config.json" ]; then
        echo "== rendering the synthetic world: $SCENES scenes x $FRAMES frames at ${HEIGHT}x${WIDTH}"
        $PY -m data.synthetic --out "$OUT/data" --layout vis --scenes "$SCENES" --frames "$FRAMES" \
            --height "$HEIGHT" --width "$WIDTH" --seed 0 --overwrite
    fi
fi
[ -f "$DATA/val.txt" ] || { echo "error: DATA=$DATA: no val.txt (a synthetic KITTI-VIS folder is expected)" >&2; exit 2; }
[ -z "$TEST_DATA" ] || [ -f "$TEST_DATA/val.txt" ] || {
    echo "error: TEST_DATA=$TEST_DATA: no val.txt (a synthetic KITTI-VIS folder is expected)" >&2; exit 2; }
for CONFIG in $CONFIGS; do config_flags "$CONFIG" > /dev/null; done
# shellcheck disable=SC2086
$PY -m experiments.run_record check --out "$OUT" --data "$DATA" -- $COMMON || exit 2

# evaluate the checkpoints of run folder $1 (mni of configuration $2) on the validation scenes of $3 into $4
evaluate() {
    run_child $PY -m experiments.eval_synthetic --data "$3" --pretrained-dispnet "$1/dispnet_checkpoint.pth.tar" \
        --pretrained-ego-pose "$1/ego_pose_checkpoint.pth.tar" --pretrained-obj-pose "$1/obj_pose_checkpoint.pth.tar" \
        --mni "$(config_mni "$2")" --device "$DEVICE" --output-dir "$4"
}

# the held-out evaluation of configuration $1, seed folder $2 (TEST_DATA set, not done yet, checkpoints kept)
evaluate_test() {
    [ -n "$TEST_DATA" ] && [ ! -f "$2/test/metrics.json" ] || return 0
    TEST_RUN=$(cat "$2/run_dir.txt" 2>/dev/null || true)
    if [ -f "$TEST_RUN/dispnet_checkpoint.pth.tar" ]; then
        evaluate "$TEST_RUN" "$1" "$TEST_DATA" "$2/test"
    else
        echo "== $1 $(basename "$2"): no checkpoints left for TEST_DATA, skipped"
    fi
}

# the end of seed folder $2 of configuration $1, once evaluated on DATA: the held-out evaluation, then the record
# of its run (validation curve, steps) and, with PRUNE=1, the deletion of its checkpoints
finish_seed() {
    evaluate_test "$1" "$2"
    FINISHED_RUN=$(cat "$2/run_dir.txt" 2>/dev/null || true)
    if [ -f "$FINISHED_RUN/checkpoint_set.json" ]; then
        [ ! -f "$FINISHED_RUN/progress_log_summary.csv" ] \
            || cp "$FINISHED_RUN/progress_log_summary.csv" "$2/validation_log.csv"
        checkpoint_set_field "$FINISHED_RUN" n_iter > "$2/steps.txt"
    fi
    if [ "$PRUNE" = 1 ] && [ -d "$2/checkpoints" ]; then
        rm -rf "$2/checkpoints"
        echo "== $1 $(basename "$2"): checkpoints deleted (PRUNE=1)"
    fi
}

# run a command; with JOBS above 1 (a background run) as a child whose PID is $CHILD, so that the run's SIGTERM
# trap can pass the signal on to it
CHILD=""
run_child() {
    if [ "$JOBS" -le 1 ]; then
        "$@"
        return
    fi
    "$@" &
    CHILD=$!
    wait "$CHILD"
}

# record in seed folder $1 the settings and the machine of a training that starts or resumes
record_training() {
    # shellcheck disable=SC2086
    $PY -m experiments.run_record write --seed-dir "$1" --data "$DATA" --device "$DEVICE" -- $COMMON
    date +%s > "$1/train_started.txt"
}

# train (or resume) and evaluate seed $2 of configuration $1 (not finished yet)
run_seed() {
    FLAGS=$(config_flags "$1")
    DIR=$OUT/runs/$1/seed$2
    mkdir -p "$DIR"
    RUN=$(last_run "$DIR")
    [ -z "$RUN" ] || close_training_time "$DIR" "$RUN"
    if [ -n "$RUN" ] && [ "$(trained_epochs "$RUN")" -ge "$EPOCHS" ]; then
        echo "== $1 seed $2: trained ($RUN), evaluating"
    elif [ -n "$RUN" ]; then
        echo "== $1 seed $2: resuming $RUN"
        record_training "$DIR"
        # shellcheck disable=SC2086
        run_child $PY train.py "$DATA" --name run --checkpoint-root "$DIR/checkpoints" --seed "$2" $COMMON $FLAGS \
            --resume "$RUN"
        close_training_time "$DIR" "$RUN"
    else
        echo "== $1 seed $2: training ($STEPS steps, batch $BATCH, ${HEIGHT}x${WIDTH})"
        record_training "$DIR"
        # shellcheck disable=SC2086
        run_child $PY train.py "$DATA" --name run --checkpoint-root "$DIR/checkpoints" --seed "$2" $COMMON $FLAGS
        RUN=$(last_run "$DIR")
        close_training_time "$DIR" "$RUN"
    fi
    echo "$RUN" > "$DIR/run_dir.txt"
    evaluate "$RUN" "$1" "$DATA" "$DIR/eval"
    mv "$DIR/eval/car_kinds.json" "$DIR/car_kinds.json"
    mv "$DIR/eval/metrics.json" "$DIR/metrics.json"
    rmdir "$DIR/eval" 2>/dev/null || true
    finish_seed "$1" "$DIR"
}

# wait for the runs started in the background ("PID:CONFIG/seedS" in $STARTED); a failed one joins $FAILED
wait_started() {
    for ENTRY in $STARTED; do
        wait "${ENTRY%%:*}" || FAILED="$FAILED ${ENTRY#*:}"
    done
    STARTED=""
}

# on Ctrl-C or SIGTERM: stop the background runs too (each passes SIGTERM on to its train.py, which saves its
# checkpoint, or evaluation), then exit $1
stop_started() {
    trap - INT TERM
    for ENTRY in $STARTED $CHILD; do
        kill -TERM "${ENTRY%%:*}" 2>/dev/null || true
    done
    echo "== stopped; the runs continue from their checkpoints when the runner is called again" >&2
    exit "$1"
}

for CONFIG in $CONFIGS; do
    mkdir -p "$OUT/runs/$CONFIG"
    config_flags "$CONFIG" > "$OUT/runs/$CONFIG/flags.txt"
done
START=$(date +%s)
STARTED=""
FAILED=""
if [ "$JOBS" -gt 1 ]; then
    trap 'stop_started 130' INT
    trap 'stop_started 143' TERM
fi
for SEED in $SEEDS; do
    for CONFIG in $CONFIGS; do
        if [ -f "$OUT/runs/$CONFIG/seed$SEED/metrics.json" ]; then
            echo "== $CONFIG seed $SEED: finished, skipped"
            finish_seed "$CONFIG" "$OUT/runs/$CONFIG/seed$SEED"
            continue
        fi
        if [ "$JOBS" -le 1 ]; then
            run_seed "$CONFIG" "$SEED"
            continue
        fi
        mkdir -p "$OUT/logs"
        LOG=$OUT/logs/${CONFIG}_seed$SEED.log
        echo "== $CONFIG seed $SEED: started in the background (log: $LOG)"
        (trap 'kill -TERM "$CHILD" 2>/dev/null; exit 143' TERM; run_seed "$CONFIG" "$SEED") >> "$LOG" 2>&1 &
        STARTED="$STARTED $!:$CONFIG/seed$SEED"
        [ "$(echo "$STARTED" | wc -w)" -lt "$JOBS" ] || wait_started
    done
done
wait_started
trap - INT TERM
[ -z "$FAILED" ] || echo "error: these runs failed:$FAILED (their logs: $OUT/logs/CONFIG_seedS.log)" >&2
SECONDS_SPENT=$(( $(date +%s) - START ))
SETTINGS="$STEPS steps (epochs of $EPOCH_SIZE), batch $BATCH, ${HEIGHT}x${WIDTH}, mni $MNI, depth scale $DEPTH_SCALE, \
antisymmetric ego pose $ANTISYMMETRIC, seeds of this invocation $SEEDS, device $DEVICE, EXTRA_FLAGS ${USER_FLAGS:-none}; this invocation \
trained/evaluated for ${SECONDS_SPENT} s (skipped runs excluded)."
$PY -m experiments.ablation_results --out "$OUT" --data "$DATA" --configs "$CONFIGS" \
    --settings "Settings: $SETTINGS Evaluated on the validation scenes of $DATA (the training world)."
echo "=> $OUT/results.md, $OUT/results.json, $OUT/results.png"
if [ -n "$TEST_DATA" ]; then
    $PY -m experiments.ablation_results --out "$OUT" --data "$TEST_DATA" --configs "$CONFIGS" \
        --metrics test/metrics.json --prefix test_results \
        --settings "Settings: $SETTINGS Evaluated on the validation scenes of $TEST_DATA (held out)."
    echo "=> $OUT/test_results.md, $OUT/test_results.json, $OUT/test_results.png"
fi
[ -z "$FAILED" ] || exit 1
