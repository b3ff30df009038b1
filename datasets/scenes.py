"""The one reader of a KITTI-VIS scene: which files it holds, checked, with one-line errors.

Layout (README, "Datasets")::

    ROOT/image/SCENE/0000000000.jpg ...     frames (jpg, or png), ROOT/image/SCENE/cam.txt
    ROOT/image/SCENE/0000000000.npy         ground-truth depth next to each frame (validation, optional)
    ROOT/segmentation/SCENE/0000000000.npy  [1+N,H,W] instance masks, channel 0 empty
    ROOT/flow_f/SCENE/0000000000.flo        file k: flow frame k -> k+1   (F-1 files)
    ROOT/flow_b/SCENE/0000000000.flo        file k: flow frame k+1 -> k   (F-1 files)
    ROOT/train.txt, ROOT/val.txt            scene names, one per line

Frames, masks and flows of a scene are paired by sorted file order, as in the official code.  The
training set, the validation set, the demo and the synthetic evaluation read scenes through
:func:`read_scene`, and flows through :func:`read_flow`.
"""
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

import numpy as np

from datasets.io import DatasetError, read_cam, read_flo
from fileio import read_list_lines

COMPANIONS = {'segmentation': '*.npy', 'flow_f': '*.flo', 'flow_b': '*.flo'}


@dataclass
class Scene:
    """Files of one scene; a companion list is ``None`` when the scene was read without it.

    ``flows_forward[k]`` is frame k -> k+1, ``flows_backward[k]`` frame k+1 -> k.
    """

    name: str
    folder: Path                                # ROOT/image/SCENE
    frames: List[Path]                          # F frames
    intrinsics: Optional[np.ndarray]            # [3,3] float32 (cam.txt), None when not read
    segmentations: Optional[List[Path]] = None  # F files
    flows_forward: Optional[List[Path]] = None  # F-1 files
    flows_backward: Optional[List[Path]] = None  # F-1 files
    depths: Optional[List[Path]] = None         # F files (ground truth)

    def first_frames(self, count):
        """The scene cut to its first ``count`` frames (and the files that go with them)."""
        cut = lambda files, n: None if files is None else files[:n]  # noqa: E731
        return replace(self, frames=self.frames[:count], segmentations=cut(self.segmentations, count),
                       flows_forward=cut(self.flows_forward, count - 1),
                       flows_backward=cut(self.flows_backward, count - 1), depths=cut(self.depths, count))


def read_scene_list(root, train):
    """Scene names listed in ``ROOT/train.txt`` (``train``) or ``ROOT/val.txt``, blank lines ignored.

    Returns:
        ``(list path, names)``.
    """
    list_path = Path(root) / ('train.txt' if train else 'val.txt')
    if not list_path.is_file():
        raise DatasetError(list_path, "scene list not found")
    try:
        names = read_list_lines(list_path)
    except ValueError as error:
        raise DatasetError(list_path, str(error)) from None
    if not names:
        raise DatasetError(list_path, "the scene list is empty")
    seen = set()
    for name in names:
        if name in seen:
            raise DatasetError(list_path, f"scene '{name}' is listed twice (its samples would count twice)")
        seen.add(name)
    return list_path, names


def list_frames(folder):
    """Sorted jpg frames of ``folder`` (png when it has no jpg)."""
    folder = Path(folder)
    frames = sorted(folder.glob('*.jpg'))
    return frames if frames else sorted(folder.glob('*.png'))


def _companion_files(folder, kind, name, required, num_frames, image_dir):
    """Sorted files of one companion folder (``None`` when it is optional and absent), their count checked."""
    if folder is None or not folder.is_dir():
        if required:
            raise DatasetError(folder, f"folder of scene '{name}' not found")
        return None
    files = sorted(folder.glob(COMPANIONS[kind]))
    if kind == 'segmentation' and len(files) != num_frames:
        raise DatasetError(folder, f"{len(files)} segmentation files for {num_frames} frames in {image_dir}")
    if kind != 'segmentation' and num_frames and len(files) != num_frames - 1:
        raise DatasetError(folder, f"{len(files)} .flo files for {num_frames} frames in {image_dir} "
                                   f"(expected {num_frames - 1}: one per consecutive pair)")
    return files


def read_scene(root, name, required=tuple(COMPANIONS), optional=(), intrinsics=True, depth=False, image_dir=None):
    """Find and check the files of scene ``name`` of the dataset ``root``.

    Args:
        root: dataset folder, or ``None`` for a lone scene folder (then no companion is found).
        name: scene name.
        required: companion kinds (``'segmentation'``, ``'flow_f'``, ``'flow_b'``) that must be there.
        optional: companion kinds read when their folder exists (``None`` in the :class:`Scene` otherwise).
        intrinsics: read ``cam.txt`` (required then).
        depth: every frame must have its ground-truth depth ``.npy`` next to it.
        image_dir: the frame folder, default ``ROOT/image/SCENE``.
    Raises:
        DatasetError: a missing folder, ``cam.txt`` or depth file; different numbers of frames, masks
            and flows; an unreadable ``cam.txt``.
    """
    image_dir = Path(image_dir) if image_dir is not None else Path(root) / 'image' / name
    if not image_dir.is_dir():
        raise DatasetError(image_dir, f"folder of scene '{name}' not found")
    frames = list_frames(image_dir)
    companions = {}
    for kind in COMPANIONS:
        if kind in required or kind in optional:
            folder = None if root is None else Path(root) / kind / name
            companions[kind] = _companion_files(folder, kind, name, kind in required, len(frames), image_dir)
    cam = image_dir / 'cam.txt'
    if intrinsics and not cam.is_file():
        raise DatasetError(cam, "not found: the scene folder needs the 3x3 intrinsics of its frames")
    depths = None
    if depth:
        depths = [frame.with_suffix('.npy') for frame in frames]
        for frame, path in zip(frames, depths):
            if not path.is_file():
                raise DatasetError(path, f"ground-truth depth of {frame.name} not found")
    return Scene(name, image_dir, frames, read_cam(cam) if intrinsics else None, companions.get('segmentation'),
                 companions.get('flow_f'), companions.get('flow_b'), depths)


def read_flow(path, frame_hw):
    """The ``.flo`` file ``path`` as ``[H,W,2]`` float32, checked to have the frame size ``(H, W)``."""
    flow = read_flo(path)
    if flow.shape[:2] != tuple(frame_hw):
        raise DatasetError(path, f"flow is {flow.shape[0]}x{flow.shape[1]} (HxW), the frames are "
                                 f"{frame_hw[0]}x{frame_hw[1]}")
    return flow
