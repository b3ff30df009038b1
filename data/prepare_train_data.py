"""Turn raw KITTI, Cityscapes sequences or any video into the KITTI-VIS training layout.

    python -m data.prepare_train_data --source kitti|cityscapes|frames|video --input PATH --output DIR
        [--img-width 832 --img-height 256 --intrinsics FX FY CX CY --flow dis|raft
         --masks maskrcnn|none --masks-from DIR --val-scenes N --val-depth --workers N]

writes ``DIR/image/SCENE/%010d.jpg + cam.txt``, ``DIR/segmentation/SCENE/%010d.npy`` (uint8
``[1+N,H,W]``, channel 0 empty), ``DIR/flow_f/SCENE/%010d.flo`` (frame k -> k+1),
``DIR/flow_b/SCENE/%010d.flo`` (frame k+1 -> k), ``DIR/train.txt`` and ``DIR/val.txt`` (and with
``--val-depth`` for KITTI, ``DIR/image/SCENE/%010d.npy`` velodyne depth of the val scenes, for
``train.py --with-gt``).  Runs are resumable (finished scenes are skipped), parallel over scenes
(``--workers``) and every file is written atomically.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m data.prepare_train_data")

import numpy as np
from tqdm import tqdm

from data.prepare_models import MASKRCNN_WEIGHTS, RAFT_WEIGHTS, MissingWeightsError, find_weights
from data.prepare_run import (MARKER_DIR, SCENE_KINDS, Settings, is_prepared, read_prepared_frames, run_scenes,
                              scene_list_bytes)
from data.prepare_sources import (CITYSCAPES_KEEP_FRACTION, DEFAULT_STATIC_FRAMES, DEFAULT_TEST_SCENES,
                                   KITTI_CAMERAS, MIN_SCENE_FRAMES, PrepareError, cityscapes_scenes,
                                   frame_folder_scenes, intrinsics_matrix, kitti_scenes, video_scenes)
from datasets.io import DatasetError, atomic_write_bytes
from fileio import OutputError, check_writable_folder
from network_input import size_problem

DEFAULT_SIZE = (256, 832)
SPLIT_SEED = 8964
DEFAULT_VAL_FRACTION = 0.1
NO_MASKS_NOTE = ("note: --masks none writes empty instance masks: training then sees no object and learns "
                 "no object motion (only depth and ego-motion)")
CLI_ERRORS = (PrepareError, DatasetError, FileNotFoundError, ValueError)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m data.prepare_train_data',
        description='Raw KITTI, Cityscapes sequences, frame folders or videos -> the KITTI-VIS training layout.')
    parser.add_argument('--source', required=True, choices=('kitti', 'cityscapes', 'frames', 'video'),
                        help='kind of input')
    parser.add_argument('--input', required=True, type=Path,
                        help='raw KITTI root (DATE/DATE_drive_XXXX_sync/...), Cityscapes root (leftImg8bit_sequence/, '
                             'camera/), a folder of frames (or of frame folders), or a video file (or a folder '
                             'of videos)')
    parser.add_argument('--output', required=True, type=Path, help='output dataset folder (KITTI-VIS layout)')
    parser.add_argument('--img-width', type=int, default=DEFAULT_SIZE[1], help='stored width (default %(default)s)')
    parser.add_argument('--img-height', type=int, default=DEFAULT_SIZE[0],
                        help='stored height (default %(default)s; Cityscapes: resized to 832x342, bottom quarter '
                             'with the car hood cropped)')
    parser.add_argument('--intrinsics', type=float, nargs=4, metavar=('FX', 'FY', 'CX', 'CY'),
                        help='camera intrinsics at the input resolution (required for frames/video)')
    parser.add_argument('--flow', choices=('dis', 'raft'), default='dis',
                        help='optical flow: OpenCV DIS (MEDIUM preset, default) or torchvision RAFT (large, else '
                             'small; weights must be in torch.hub.get_dir()/checkpoints)')
    parser.add_argument('--masks', choices=('maskrcnn', 'none'), default=None,
                        help='instance masks: torchvision Mask R-CNN (default; weights must be in the hub cache) '
                             'or none (empty masks)')
    parser.add_argument('--masks-from', type=Path, default=None,
                        help='precomputed masks: DIR/SCENE/STEM.npy|png or DIR/STEM.npy|png per input frame '
                             '([1+N,H,W] or [N,H,W] .npy, or instance-id image with 0 = background)')
    parser.add_argument('--mask-score', type=float, default=0.5,
                        help='Mask R-CNN detection score threshold (default %(default)s)')
    parser.add_argument('--mask-min-size', type=int, default=800,
                        help='short side Mask R-CNN resizes frames to (default %(default)s as in torchvision; '
                             'smaller is faster, misses small objects)')
    parser.add_argument('--val-scenes', type=int, default=None,
                        help='number of recordings (a KITTI drive with both cameras, a Cityscapes sequence, a '
                             'video) put in val.txt, chosen with a fixed seed (default: 10%%, at least 1)')
    parser.add_argument('--val-depth', action='store_true',
                        help='KITTI: write velodyne GT depth image/SCENE/%%010d.npy for the val scenes (--with-gt)')
    parser.add_argument('--workers', type=int, default=1, help='scenes prepared in parallel (default %(default)s)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                        help='device of RAFT / Mask R-CNN (default %(default)s)')
    parser.add_argument('--frame-step', type=int, default=1,
                        help='keep every N-th frame (after dropping KITTI static frames; default %(default)s)')
    parser.add_argument('--cameras', nargs='+', choices=KITTI_CAMERAS, default=list(KITTI_CAMERAS),
                        help='KITTI cameras, one scene each (default: 02 03)')
    parser.add_argument('--test-scenes', default=str(DEFAULT_TEST_SCENES),
                        help='KITTI drives left out (Eigen test scenes; default data/kitti_test_scenes.txt; none)')
    parser.add_argument('--static-frames', default=str(DEFAULT_STATIC_FRAMES),
                        help='KITTI static frames to drop (default data/kitti_static_frames.txt; none)')
    parser.add_argument('--cityscapes-splits', nargs='+', default=['train'],
                        help='Cityscapes splits of leftImg8bit_sequence to use (default: train)')
    parser.add_argument('--jpeg-quality', type=int, default=95,
                        help='jpg quality of stored frames (default %(default)s)')
    return parser


def check_arguments(args):
    """Raise :class:`PrepareError` for contradictory or impossible options."""
    if args.img_width < 1 or args.img_height < 1:
        raise PrepareError(f"--img-width and --img-height must be positive, got {args.img_width}x{args.img_height}")
    if args.source in ('frames', 'video') and args.intrinsics is None:
        raise PrepareError(f"--source {args.source} needs --intrinsics FX FY CX CY (at the input resolution)")
    if args.source in ('kitti', 'cityscapes') and args.intrinsics is not None:
        raise PrepareError(f"--intrinsics is only for frames/video; {args.source} intrinsics come from its calibration")
    if args.intrinsics is not None and (args.intrinsics[0] <= 0 or args.intrinsics[1] <= 0):
        raise PrepareError(f"--intrinsics: FX and FY must be positive, got {args.intrinsics[0]} and "
                           f"{args.intrinsics[1]}")
    if args.masks is not None and args.masks_from is not None:
        raise PrepareError("use either --masks or --masks-from, not both")
    if args.masks_from is not None and not args.masks_from.is_dir():
        raise PrepareError(f"{args.masks_from}: --masks-from folder not found")
    if args.mask_min_size < 32:
        raise PrepareError(f"--mask-min-size must be at least 32 pixels, got {args.mask_min_size}")
    if not 0 <= args.mask_score <= 1:
        raise PrepareError(f"--mask-score must be between 0 and 1, got {args.mask_score}")
    if args.val_depth and args.source != 'kitti':
        raise PrepareError("--val-depth needs velodyne scans: only for --source kitti")
    if args.workers < 1 or args.frame_step < 1:
        raise PrepareError(f"--workers and --frame-step must be at least 1, got {args.workers} and {args.frame_step}")
    if args.val_scenes is not None and args.val_scenes < 0:
        raise PrepareError(f"--val-scenes must be >= 0, got {args.val_scenes}")
    if not 1 <= args.jpeg_quality <= 100:
        raise PrepareError(f"--jpeg-quality must be between 1 and 100, got {args.jpeg_quality}")
    if args.output.exists() and not args.output.is_dir():
        raise PrepareError(f"{args.output}: --output exists and is not a folder")


def make_settings(args):
    """:class:`Settings` of the run; learned models' weights are looked up now (fail before any work)."""
    masks = 'files' if args.masks_from is not None else (args.masks or 'maskrcnn')
    flow_weights = find_weights(RAFT_WEIGHTS, 'RAFT', 'use --flow dis') if args.flow == 'raft' else None
    mask_weights = (find_weights(MASKRCNN_WEIGHTS, 'Mask R-CNN', 'use --masks none or --masks-from DIR')
                    if masks == 'maskrcnn' else None)
    keep = CITYSCAPES_KEEP_FRACTION if args.source == 'cityscapes' else 1.0
    return Settings(output_hw=(args.img_height, args.img_width), keep_fraction=keep, flow=args.flow,
                    flow_weights=flow_weights, masks=masks, mask_weights=mask_weights,
                    mask_score=args.mask_score if masks == 'maskrcnn' else 0.0,
                    mask_min_size=args.mask_min_size if masks == 'maskrcnn' else 0,
                    masks_from=str(args.masks_from.resolve()) if args.masks_from else '',
                    jpeg_quality=args.jpeg_quality, device=args.device)


def check_output(root):
    """Refuse an ``--output`` this tool would damage: one it cannot write, or a dataset it did not write (no
    ``.prepare/`` folder, e.g. a downloaded KITTI-VIS), whose frames, masks, flows and scene lists it would replace."""
    try:
        check_writable_folder(root, '--output')
    except OutputError as error:
        raise PrepareError(str(error)) from None
    if (Path(root) / MARKER_DIR).is_dir():
        return
    found = [name for name in SCENE_KINDS + ('train.txt', 'val.txt') if (Path(root) / name).exists()]
    if found:
        raise PrepareError(f"--output {root}: holds a dataset ({found[0]}) that data.prepare_train_data did not write "
                           f"(no {MARKER_DIR}/ folder) and would replace: choose a new or empty folder")


def collect_scenes(args):
    """The :class:`SceneJob` list of the input (sorted by name; names checked to be unique)."""
    intrinsics = intrinsics_matrix(*args.intrinsics) if args.intrinsics is not None else None
    if args.source == 'kitti':
        jobs, excluded = kitti_scenes(args.input, args.test_scenes, args.static_frames, args.cameras, args.frame_step)
        if excluded:
            print(f"left out {excluded} KITTI drive(s) of the Eigen test scenes ({args.test_scenes})")
        if not jobs:
            raise PrepareError(f"{args.input}: no training drive left (every drive is a test scene or has fewer "
                               f"than {MIN_SCENE_FRAMES} non-static frames)")
    elif args.source == 'cityscapes':
        jobs = cityscapes_scenes(args.input, args.cityscapes_splits, args.frame_step)
    elif args.source == 'frames':
        jobs = frame_folder_scenes(args.input, intrinsics, args.frame_step)
    else:
        jobs = video_scenes(args.input, intrinsics, args.frame_step)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise PrepareError(f"{args.input}: two inputs give the same scene name '{duplicate}'")
    return sorted(jobs, key=lambda job: job.name)


def split_groups(groups, val_count=None, seed=SPLIT_SEED):
    """Val groups: ``val_count`` of the sorted unique ``groups`` drawn with a fixed seed.

    Default count: 10 % of the groups (rounded), at least 1.  A single group is both train and val.
    """
    unique = sorted(set(groups))
    if len(unique) == 1:
        return set(unique)
    count = max(1, round(DEFAULT_VAL_FRACTION * len(unique))) if val_count is None else val_count
    if count >= len(unique):
        raise PrepareError(f"--val-scenes {count}: only {len(unique)} recordings, at least one must stay for training")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i] for i in order[:count]}


def split_scenes(jobs, val_groups):
    """``(train, val)`` scene names; when every scene is in val (one recording) it is in both."""
    val = [job.name for job in jobs if job.group in val_groups]
    train = [job.name for job in jobs if job.group not in val_groups] or list(val)
    return train, val


def write_scene_lists(root, train, val, frames):
    """Write ``train.txt`` / ``val.txt`` (scenes with at least 3 frames only), atomically."""
    listed = {name for name, count in frames.items() if count >= MIN_SCENE_FRAMES}
    train, val = [n for n in train if n in listed], [n for n in val if n in listed]
    if not train:
        raise PrepareError(f"{root}: no scene with at least {MIN_SCENE_FRAMES} frames was prepared")
    atomic_write_bytes(Path(root) / 'train.txt', scene_list_bytes(train))
    atomic_write_bytes(Path(root) / 'val.txt', scene_list_bytes(val))
    return train, val


def prepare(args):
    """Run the whole preparation for parsed ``args``; returns ``(train, val)`` scene names."""
    check_arguments(args)
    check_output(args.output)
    settings = make_settings(args)
    jobs = collect_scenes(args)
    val_groups = split_groups([job.group for job in jobs], args.val_scenes)
    train, val = split_scenes(jobs, val_groups)
    with_depth = {job.name: bool(args.val_depth and job.name in val) for job in jobs}
    root = args.output
    (root / MARKER_DIR).mkdir(parents=True, exist_ok=True)   # ours from now on, also if interrupted
    pending = [(job, with_depth[job.name]) for job in jobs
               if not is_prepared(root, job.name, settings, with_depth[job.name])]
    skipped = len(jobs) - len(pending)
    if settings.masks == 'none':
        print(NO_MASKS_NOTE)
    problem = size_problem(args.img_height, args.img_width)
    if problem:
        print(f"note: the stored frames will be {problem}: train.py will refuse them")
    print(f"{len(jobs)} scene(s) from {args.input}: {skipped} already prepared, {len(pending)} to prepare "
          f"at {args.img_width}x{args.img_height} with {args.workers} worker(s)")
    total = sum(job.expected_frames for job, _ in pending)
    start = time.perf_counter()
    with tqdm(total=total, unit='frame', desc='preparing', disable=not pending) as bar:
        run_scenes(root, pending, settings, args.workers, bar.update)
        done_frames = bar.n
    elapsed = time.perf_counter() - start
    frames = read_prepared_frames(root, [job.name for job in jobs])
    train, val = write_scene_lists(root, train, val, frames)
    rate = f", {done_frames / elapsed:.2f} frames/s" if done_frames and elapsed > 0 else ''
    print(f"prepared {done_frames} frame(s) in {elapsed:.1f} s{rate}; {root}: {len(train)} train and "
          f"{len(val)} val scene(s), {sum(frames[n] for n in set(train) | set(val))} frames")
    if set(train) == set(val):
        print("note: a single recording is used for both train.txt and val.txt")
    return train, val


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        prepare(args)
    except MissingWeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CLI_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished scenes are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
