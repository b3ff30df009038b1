"""Preparing scenes: one scene end to end, resumable markers, parallel workers with progress.

A finished scene gets a marker ``ROOT/.prepare/SCENE.json`` (written last, atomically) holding the
settings it was prepared with and its frame count.  A scene whose marker matches the current
settings and whose files are all there is skipped; any other scene is cleared and prepared again,
so an interrupted run resumes with the unfinished scenes only.
"""
import json
import multiprocessing
import os
import queue
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import torch

from data.prepare_models import DisFlow, FileMasks, MaskRcnnMasks, NoMasks, RaftFlow
from devices import select_device
from data.prepare_sources import MIN_SCENE_FRAMES, FrameGeometry, PrepareError, iter_frames
from datasets.io import DatasetError, atomic_write_bytes, save_npy, write_cam, write_flo, write_image, write_segmentation
from datasets.scenes import read_scene
from kitti_eval.kitti_raw import project_points, read_velodyne_points, velodyne_to_image_matrix

MARKER_DIR = '.prepare'
SCENE_KINDS = ('image', 'segmentation', 'flow_f', 'flow_b')
OUTPUT_PATTERNS = {'image': ('*.jpg', '*.npy', 'cam.txt'), 'segmentation': ('*.npy',),
                   'flow_f': ('*.flo',), 'flow_b': ('*.flo',)}
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Settings:
    """How every scene is prepared (what a marker records, plus the run-time device).

    Attributes:
        output_hw: ``(H, W)`` of the stored frames; keep_fraction: see :class:`FrameGeometry`.
        flow: 'dis' or 'raft'; flow_weights: :class:`WeightsChoice` of RAFT or ``None``.
        masks: 'maskrcnn', 'none' or 'files'; mask_weights: Mask R-CNN :class:`WeightsChoice` or ``None``;
        mask_score: detection score threshold; mask_min_size: detector input short side;
        masks_from: folder of precomputed masks or ``''``.
        jpeg_quality: quality of the stored jpg frames; device: 'auto', 'cpu' or 'cuda'.
    """
    output_hw: tuple
    keep_fraction: float
    flow: str
    flow_weights: object
    masks: str
    mask_weights: object
    mask_score: float
    mask_min_size: int
    masks_from: str
    jpeg_quality: int
    device: str = 'auto'

    def signature(self):
        """JSON-ready record of everything that changes the output files."""
        record = asdict(self)
        record.pop('device')
        record['output_hw'] = list(self.output_hw)
        for key in ('flow_weights', 'mask_weights'):
            record[key] = Path(record[key]['path']).name if record[key] else None
        return record


@dataclass
class Models:
    """What a worker computes frames with: ``flow(a, b) -> (f_ab, f_ba)``, ``masks(image, scene, stem, geometry)``."""
    flow: object
    masks: object


def build_models(settings):
    """Flow and mask estimators of ``settings`` (loads weights; call once per process)."""
    device = select_device(settings.device)
    flow = RaftFlow(settings.flow_weights, device) if settings.flow == 'raft' else DisFlow()
    if settings.masks == 'maskrcnn':
        masks = MaskRcnnMasks(settings.mask_weights, settings.mask_score, device, settings.mask_min_size)
    elif settings.masks == 'files':
        masks = FileMasks(settings.masks_from)
    else:
        masks = NoMasks()
    return Models(flow, masks)


def marker_path(root, name):
    """``ROOT/.prepare/NAME.json``: written last, when the scene is complete."""
    return Path(root) / MARKER_DIR / f'{name}.json'


def scene_dirs(root, name):
    """``{kind: ROOT/kind/NAME}`` for the four KITTI-VIS folders of a scene."""
    return {kind: Path(root) / kind / name for kind in SCENE_KINDS}


def read_marker(root, name):
    """The marker of a scene as a dict, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(marker_path(root, name).read_text())
    except (OSError, ValueError):
        return None


def is_prepared(root, name, settings, with_depth):
    """True when the scene was finished with these settings and all its files are there."""
    marker = read_marker(root, name)
    if marker is None or marker.get('settings') != json.loads(json.dumps(settings.signature())):
        return False
    if marker.get('depth') != with_depth:
        return False
    frames = marker.get('frames', -1)
    if frames < MIN_SCENE_FRAMES:  # a finished scene too short to keep (its files were removed)
        return frames >= 0
    try:  # the training set's scene reader: every folder, file count, cam.txt (and depth) checked
        scene = read_scene(root, name, depth=with_depth)
    except DatasetError:
        return False
    return len(scene.frames) == frames and all(frame.suffix == '.jpg' for frame in scene.frames)


def clear_scene(root, name):
    """Remove the files a previous (unfinished or different) preparation of the scene left."""
    marker_path(root, name).unlink(missing_ok=True)
    for kind, folder in scene_dirs(root, name).items():
        if folder.is_dir():
            for pattern in OUTPUT_PATTERNS[kind] + ('.*.tmp',):
                for path in folder.glob(pattern):
                    path.unlink()


def remove_empty_scene_dirs(root, name):
    """Remove the scene's four folders when they are empty."""
    for folder in scene_dirs(root, name).values():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def prepare_scene(root, job, settings, models, with_depth, report):
    """Write one scene: frames, ``cam.txt``, masks, both flows (and GT depth), then its marker.

    Args:
        root: output folder; job: :class:`SceneJob`; models: :class:`Models`.
        with_depth: also write ``image/SCENE/%010d.npy`` velodyne depth ``[H,W]`` (KITTI only).
        report: called with the number of frames just finished (progress).
    Returns:
        the number of stored frames (scenes under 3 frames are removed again and not listed).
    """
    clear_scene(root, job.name)
    dirs = scene_dirs(root, job.name)
    geometry = FrameGeometry(job.input_hw, settings.output_hw, settings.keep_fraction)
    write_cam(dirs['image'] / 'cam.txt', geometry.intrinsics(job.intrinsics))
    velo_to_image = geometry.row_scale() @ velodyne_to_image_matrix(job.calib_dir, job.camera) if with_depth else None
    previous, count = None, 0
    for index, (stem, rgb) in enumerate(iter_frames(job)):
        image = geometry.image(rgb)
        name = f'{index:010d}'
        write_image(dirs['image'] / f'{name}.jpg', image, settings.jpeg_quality)
        write_segmentation(dirs['segmentation'] / f'{name}.npy', models.masks(image, job.name, stem, geometry))
        if velo_to_image is not None:
            scan = Path(job.frames[index]).parents[2] / 'velodyne_points' / 'data' / f'{stem}.bin'
            save_npy(dirs['image'] / f'{name}.npy',
                     project_points(read_velodyne_points(scan), velo_to_image, settings.output_hw))
        if previous is not None:
            forward, backward = models.flow(previous, image)
            write_flo(dirs['flow_f'] / f'{index - 1:010d}.flo', forward)
            write_flo(dirs['flow_b'] / f'{index - 1:010d}.flo', backward)
        previous, count = image, count + 1
        report(1)
    if count < MIN_SCENE_FRAMES:
        clear_scene(root, job.name)
        remove_empty_scene_dirs(root, job.name)
    record = {'scene': job.name, 'frames': count, 'depth': with_depth, 'settings': settings.signature()}
    atomic_write_bytes(marker_path(root, job.name), json.dumps(record, indent=1).encode())
    return count


def scene_error_message(job, error):
    """One line for an error while preparing ``job``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ''
    if isinstance(error, (ValueError, OSError)):
        return f"scene {job.name}: {text}"
    return f"scene {job.name}: {type(error).__name__}: {text}"


def worker_loop(root, settings, tasks, events, threads):
    """Spawned worker: prepare the ``(job, with_depth)`` tasks until ``None``, reporting on ``events``.

    Events: ``('frames', n)``, ``('done', name, frames)``, ``('error', message)``, ``('exit',)``.
    """
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        models = build_models(settings)
        for job, with_depth in iter(tasks.get, None):
            try:
                frames = prepare_scene(root, job, settings, models, with_depth, lambda n: events.put(('frames', n)))
            except Exception as error:
                events.put(('error', scene_error_message(job, error)))
                return
            events.put(('done', job.name, frames))
    except KeyboardInterrupt:
        return
    except Exception as error:
        events.put(('error', f"worker: {type(error).__name__}: {error}"))
        return
    events.put(('exit',))


def run_scenes(root, tasks, settings, workers, progress):
    """Prepare ``tasks`` (``[(job, with_depth)]``) with ``workers`` processes; returns ``{name: frames}``.

    ``progress(n)`` is called in this process for every ``n`` finished frames.  With one worker
    everything runs here; otherwise in spawned processes (safe with CUDA and on every platform).
    """
    if workers <= 1 or len(tasks) <= 1:
        models = build_models(settings)
        done = {}
        for job, with_depth in tasks:
            try:
                done[job.name] = prepare_scene(root, job, settings, models, with_depth, progress)
            except (ValueError, OSError) as error:
                raise PrepareError(scene_error_message(job, error)) from None
        return done
    return _run_parallel(root, tasks, settings, min(workers, len(tasks)), progress)


def _run_parallel(root, tasks, settings, workers, progress):
    context = multiprocessing.get_context('spawn')
    task_queue, events = context.Queue(), context.Queue()
    for task in tasks:
        task_queue.put(task)
    for _ in range(workers):
        task_queue.put(None)
    threads = max(1, (os.cpu_count() or 1) // workers)
    processes = [context.Process(target=worker_loop, args=(str(root), settings, task_queue, events, threads),
                                 daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    done, exited = {}, 0
    try:
        while exited < workers:
            try:
                event = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and events.empty():
                    raise PrepareError("a preparation worker died without reporting (out of memory?); "
                                       "run again to resume") from None
                continue
            if event[0] == 'frames':
                progress(event[1])
            elif event[0] == 'done':
                done[event[1]] = event[2]
            elif event[0] == 'error':
                raise PrepareError(event[1])
            else:
                exited += 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    return done


def read_prepared_frames(root, names):
    """``{name: frames}`` of the scenes among ``names`` whose marker exists."""
    frames = {}
    for name in names:
        marker = read_marker(root, name)
        if marker is not None:
            frames[name] = int(marker.get('frames', 0))
    return frames


def scene_list_bytes(names):
    """Contents of ``train.txt`` / ``val.txt``: one scene name a line."""
    return ''.join(f'{name}\n' for name in names).encode()
