"""Input sources of ``data/prepare_train_data.py``: scene discovery, frame reading, resizing.

A *scene* (:class:`SceneJob`) is one output sequence ``ROOT/image/SCENE``: a raw KITTI drive seen by
one camera, a Cityscapes sequence snippet, a folder of frames or a video file.  Everything a worker
needs to prepare it is in the job (paths, intrinsics at the input resolution), so jobs can be sent
to spawned processes.
"""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.io import DatasetError, read_image
from fileio import read_list_lines
from kitti_eval.kitti_raw import calib_entry, image_size, read_calib_file
from network_input import resize_frame

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_TEST_SCENES = DATA_DIR / 'kitti_test_scenes.txt'
DEFAULT_STATIC_FRAMES = DATA_DIR / 'kitti_static_frames.txt'
KITTI_CAMERAS = ('02', '03')
CITYSCAPES_KEEP_FRACTION = 0.75
FRAME_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
CITYSCAPES_FRAME = re.compile(r'^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit$')
MIN_SCENE_FRAMES = 3


class PrepareError(ValueError):
    """Unusable input or arguments of the data preparation (one-line message naming the file)."""


@dataclass(frozen=True)
class SceneJob:
    """One output scene and where its frames come from.

    Attributes:
        name: output scene name (``ROOT/image/NAME``).
        group: scenes of one group go to the same split (both cameras of a KITTI drive).
        frames: input frame files in order (empty for a video).
        stems: source name of every frame (file stem, or ``%010d`` frame index of a video),
            used to find ``--masks-from`` files; for a video it is filled while reading.
        intrinsics: ``[3,3]`` nested tuple, intrinsics at the input resolution.
        input_hw: ``(H, W)`` of the input frames.
        video: video file, or ``''``.
        frame_step: keep every ``frame_step``-th frame of a video.
        expected_frames: frames the scene should give (a video's count is an estimate).
        calib_dir: KITTI date folder (velodyne ground truth), or ``''``.
        camera: KITTI camera 2 or 3 (0 for other sources).
    """
    name: str
    group: str
    frames: tuple
    stems: tuple
    intrinsics: tuple
    input_hw: tuple
    video: str = ''
    frame_step: int = 1
    expected_frames: int = 0
    calib_dir: str = ''
    camera: int = 0


def natural_key(path):
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', Path(path).name)]


def intrinsics_matrix(fx, fy, cx, cy):
    """``[3,3]`` nested tuple of a pinhole camera."""
    return ((float(fx), 0.0, float(cx)), (0.0, float(fy), float(cy)), (0.0, 0.0, 1.0))


class FrameGeometry:
    """Resize (and for Cityscapes crop the bottom) input frames to the stored size.

    The frame is resized to ``(W, ceil(H / keep_fraction))`` and its top ``H`` rows are kept, so
    ``keep_fraction = 0.75`` turns 2048x1024 Cityscapes frames into 832x342 and then 832x256 (the
    car hood removed).  Intrinsics are scaled like the frame (``fx, cx`` by the width ratio,
    ``fy, cy`` by the height ratio; cropping the bottom changes neither).

    Args:
        input_hw: ``(H_in, W_in)`` of the input frames.
        output_hw: ``(H, W)`` of the stored frames.
        keep_fraction: part of the resized height that is kept (1 = no crop).
    """

    def __init__(self, input_hw, output_hw, keep_fraction=1.0):
        self.input_hw = tuple(int(v) for v in input_hw)
        self.output_hw = tuple(int(v) for v in output_hw)
        resized_height = self.output_hw[0] if keep_fraction >= 1 else math.ceil(self.output_hw[0] / keep_fraction)
        self.resized_hw = (resized_height, self.output_hw[1])

    def image(self, rgb):
        """``[H_in,W_in,3]`` uint8 -> ``[H,W,3]`` uint8 (area averaging when shrinking, bilinear otherwise)."""
        resized = resize_frame(rgb, *self.resized_hw)
        return np.ascontiguousarray(resized[:self.output_hw[0]])

    def intrinsics(self, intrinsics):
        """``[3,3]`` intrinsics of the input frames -> ``[3,3]`` float64 of the stored frames."""
        scaled = np.array(intrinsics, dtype=np.float64)
        scaled[0] *= self.resized_hw[1] / self.input_hw[1]
        scaled[1] *= self.resized_hw[0] / self.input_hw[0]
        return scaled

    def row_scale(self):
        """``[3,3]`` diagonal matrix that scales the first two rows of a projection like :meth:`intrinsics`."""
        return np.diag([self.resized_hw[1] / self.input_hw[1], self.resized_hw[0] / self.input_hw[0], 1.0])

    def masks(self, masks):
        """``[N,h,w]`` masks covering the whole input frame -> ``[N,H,W]`` bool (nearest neighbour).

        Masks already at the stored size are returned as they are.
        """
        masks = np.asarray(masks) != 0
        if masks.shape[1:] == self.output_hw:
            return masks
        height, width = masks.shape[1:]
        rows = np.minimum(((np.arange(self.resized_hw[0]) + 0.5) * height / self.resized_hw[0]).astype(np.int64),
                          height - 1)[:self.output_hw[0]]
        cols = np.minimum(((np.arange(self.resized_hw[1]) + 0.5) * width / self.resized_hw[1]).astype(np.int64),
                          width - 1)
        return masks[:, rows[:, None], cols[None, :]]


def iter_frames(job):
    """Yield ``(stem, rgb [H_in,W_in,3] uint8)`` for every frame of ``job``, in order."""
    if job.video:
        yield from _iter_video(job)
        return
    for path, stem in zip(job.frames, job.stems):
        rgb = read_image(path)
        if rgb.shape[:2] != tuple(job.input_hw):
            raise DatasetError(path, f"frame is {rgb.shape[0]}x{rgb.shape[1]} (HxW), the first frame of scene "
                                     f"'{job.name}' is {job.input_hw[0]}x{job.input_hw[1]}")
        yield stem, rgb


def _iter_video(job):
    capture = cv2.VideoCapture(job.video)
    if not capture.isOpened():
        raise DatasetError(job.video, "cannot open the video (OpenCV could not decode it)")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            if index % job.frame_step == 0:
                if bgr.shape[:2] != tuple(job.input_hw):
                    raise DatasetError(job.video, f"frame {index} is {bgr.shape[0]}x{bgr.shape[1]} (HxW), "
                                                  f"expected {job.input_hw[0]}x{job.input_hw[1]}")
                yield f'{index:010d}', cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def read_name_list(path, what):
    """Stripped non-empty lines of a reference list (``none`` = no file: empty list)."""
    if str(path).lower() == 'none':
        return []
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: {what} not found")
    try:
        return read_list_lines(path)
    except ValueError as error:
        raise PrepareError(f"{path}: {error}") from None


def read_static_frames(path):
    """``{drive folder name: set of '%010d' frame stems}`` from a ``DATE DRIVE FRAME`` list."""
    static = {}
    for number, line in enumerate(read_name_list(path, 'static frame list'), 1):
        parts = line.split()
        if len(parts) != 3 or not parts[2].isdigit():
            raise PrepareError(f"{path}:{number}: expected 'DATE DRIVE FRAME', got {line!r}")
        static.setdefault(parts[1], set()).add(f'{int(parts[2]):010d}')
    return static


def kitti_scenes(root, test_scenes_file=DEFAULT_TEST_SCENES, static_frames_file=DEFAULT_STATIC_FRAMES,
                 cameras=KITTI_CAMERAS, frame_step=1):
    """Scenes of a raw KITTI root ``ROOT/DATE/DATE_drive_XXXX_sync/image_0C/data/*.png``.

    Drives of the Eigen test scenes are left out, static frames are dropped and the remaining
    frames are stored consecutively (as SC-SfMLearner does), one scene ``DRIVE_0C`` per camera.
    ``cam.txt`` comes from ``P_rect_0C`` of the date's ``calib_cam_to_cam.txt``.

    Returns:
        ``(jobs, excluded)``: list of :class:`SceneJob`, number of drives left out as test scenes.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: raw KITTI folder not found")
    drives = sorted(d for d in root.glob('*/*_drive_*_sync') if d.is_dir())
    if not drives:
        raise PrepareError(f"{root}: no raw KITTI drive found (expected DATE/DATE_drive_XXXX_sync/image_02/data/*.png)")
    test_scenes = set(read_name_list(test_scenes_file, 'test scene list'))
    static = read_static_frames(static_frames_file)
    jobs, excluded = [], 0
    for drive in drives:
        if drive.name[:-len('_sync')] in test_scenes:
            excluded += 1
            continue
        for camera in cameras:
            frames = sorted((drive / f'image_{camera}' / 'data').glob('*.png'))
            frames = [f for f in frames if f.stem not in static.get(drive.name, ())][::frame_step]
            if len(frames) < MIN_SCENE_FRAMES:
                continue
            calib_path = drive.parent / 'calib_cam_to_cam.txt'
            projection = calib_entry(read_calib_file(calib_path), f'P_rect_{camera}', 12, calib_path).reshape(3, 4)
            jobs.append(SceneJob(name=f'{drive.name}_{camera}', group=drive.name, frames=tuple(map(str, frames)),
                                 stems=tuple(f.stem for f in frames), intrinsics=_nested(projection[:, :3]),
                                 input_hw=image_size(frames[0]), expected_frames=len(frames),
                                 calib_dir=str(drive.parent), camera=int(camera)))
    return jobs, excluded


def cityscapes_scenes(root, splits=('train',), frame_step=1):
    """Scenes of ``ROOT/leftImg8bit_sequence/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png``.

    A scene is a run of consecutive frame numbers of one ``CITY_SEQ`` (a 30-frame snippet),
    named ``CITY_SEQ_FIRSTFRAME``; intrinsics come from ``ROOT/camera/SPLIT/CITY/CITY_SEQ_*_camera.json``
    (``intrinsic.fx, fy, u0, v0``).
    """
    root = Path(root)
    jobs = []
    for split in splits:
        split_dir = root / 'leftImg8bit_sequence' / split
        if not split_dir.is_dir():
            raise PrepareError(f"{split_dir}: Cityscapes sequence folder not found "
                               f"(expected ROOT/leftImg8bit_sequence/{split}/CITY/*_leftImg8bit.png)")
        for city_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            jobs += _cityscapes_city(root, split, city_dir, frame_step)
    if not jobs:
        raise PrepareError(f"{root}: no Cityscapes sequence of at least {MIN_SCENE_FRAMES} frames found in "
                           f"leftImg8bit_sequence/{{{','.join(splits)}}}")
    return jobs


def _cityscapes_city(root, split, city_dir, frame_step):
    sequences = {}
    for path in city_dir.glob('*_leftImg8bit.png'):
        match = CITYSCAPES_FRAME.match(path.stem)
        if match:
            sequences.setdefault((match['city'], match['seq']), []).append((int(match['frame']), path))
    jobs = []
    for (city, seq), frames in sorted(sequences.items()):
        for run in _consecutive_runs(sorted(frames)):
            run = run[::frame_step]
            if len(run) < MIN_SCENE_FRAMES:
                continue
            paths = [path for _, path in run]
            camera = _cityscapes_camera_file(root, split, city, seq, run[0][0], run[-1][0])
            jobs.append(SceneJob(name=f'{city}_{seq}_{run[0][0]:06d}', group=f'{city}_{seq}',
                                 frames=tuple(map(str, paths)), stems=tuple(p.stem for p in paths),
                                 intrinsics=read_cityscapes_intrinsics(camera), input_hw=image_size(paths[0]),
                                 expected_frames=len(paths)))
    return jobs


def _consecutive_runs(numbered):
    """Split ``[(number, item)]`` (sorted) where the numbers are not consecutive."""
    runs = [[numbered[0]]]
    for previous, current in zip(numbered, numbered[1:]):
        if current[0] == previous[0] + 1:
            runs[-1].append(current)
        else:
            runs.append([current])
    return runs


def _cityscapes_camera_file(root, split, city, seq, first, last):
    """The camera JSON of a snippet: one inside its frame range if any, else any of ``CITY_SEQ``."""
    folder = root / 'camera' / split / city
    candidates = sorted(folder.glob(f'{city}_{seq}_*_camera.json'))
    if not candidates:
        raise PrepareError(f"{folder / f'{city}_{seq}_*_camera.json'}: no Cityscapes camera file found "
                           f"(intrinsics of sequence {city}_{seq})")
    inside = [p for p in candidates if p.stem.split('_')[-2].isdigit() and first <= int(p.stem.split('_')[-2]) <= last]
    return (inside or candidates)[0]


def read_cityscapes_intrinsics(path):
    """``[3,3]`` nested tuple from a Cityscapes ``*_camera.json`` (``intrinsic.fx, fy, u0, v0``)."""
    try:
        intrinsic = json.loads(Path(path).read_text())['intrinsic']
        return intrinsics_matrix(intrinsic['fx'], intrinsic['fy'], intrinsic['u0'], intrinsic['v0'])
    except (ValueError, KeyError, TypeError) as error:
        raise PrepareError(f"{path}: not a Cityscapes camera file with intrinsic.fx, fy, u0, v0 ({error!r})") from None


def frame_folder_scenes(root, intrinsics, frame_step=1):
    """Scenes of a folder of frames (one scene named after it) or of a folder of such folders."""
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"{root}: frame folder not found")
    folders = [root] if _frame_files(root) else sorted(d for d in root.iterdir() if d.is_dir() and _frame_files(d))
    if not folders:
        raise PrepareError(f"{root}: no frames ({', '.join(FRAME_EXTENSIONS)}) in the folder or its sub-folders")
    jobs = []
    for folder in folders:
        frames = _frame_files(folder)[::frame_step]
        if len(frames) < MIN_SCENE_FRAMES:
            if folder == root:
                raise PrepareError(f"{folder}: {len(frames)} frames, at least {MIN_SCENE_FRAMES} are needed")
            print(f"note: {folder} skipped: {len(frames)} frames, fewer than {MIN_SCENE_FRAMES}")
            continue
        stems = [f.stem for f in frames]
        if len(set(stems)) != len(stems):
            raise PrepareError(f"{folder}: several frames share a file name stem (e.g. 0001.png and 0001.jpg)")
        jobs.append(SceneJob(name=folder.name, group=folder.name, frames=tuple(map(str, frames)), stems=tuple(stems),
                             intrinsics=intrinsics, input_hw=_read_hw(frames[0]), expected_frames=len(frames)))
    if not jobs:
        raise PrepareError(f"{root}: no sub-folder holds at least {MIN_SCENE_FRAMES} frames")
    return jobs


def _frame_files(folder):
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
                  key=natural_key)


def _read_hw(path):
    try:
        return image_size(path)
    except ValueError as error:
        raise PrepareError(str(error)) from None


def video_scenes(path, intrinsics, frame_step=1):
    """Scenes of a video file (named after its stem) or of a folder of video files."""
    path = Path(path)
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise PrepareError(f"{path}: no video file ({', '.join(VIDEO_EXTENSIONS)}) in the folder")
    elif path.is_file():
        videos = [path]
    else:
        raise PrepareError(f"{path}: video file not found")
    return [_video_job(video, intrinsics, frame_step) for video in videos]


def _video_job(video, intrinsics, frame_step):
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise PrepareError(f"{video}: cannot open the video (OpenCV could not decode it)")
        hw = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
        count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()
    if min(hw) <= 0:
        raise PrepareError(f"{video}: the video reports no frame size")
    return SceneJob(name=video.stem, group=video.stem, frames=(), stems=(), intrinsics=intrinsics, input_hw=hw,
                    video=str(video), frame_step=frame_step, expected_frames=math.ceil(count / frame_step))


def _nested(matrix):
    return tuple(tuple(float(v) for v in row) for row in matrix)
