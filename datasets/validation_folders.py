"""Validation frames with ground-truth depth for ``--with-gt`` (docs/ARCHITECTURE.md, "Data layout").

Layout: the scenes of ``ROOT/val.txt``; each frame ``ROOT/image/SCENE/XXXXXXXXXX.jpg`` has its depth
map ``ROOT/image/SCENE/XXXXXXXXXX.npy`` (``[H,W]``, 0 = no measurement) next to it, and its
instance segmentation ``ROOT/segmentation/SCENE/XXXXXXXXXX.npy`` (paired by sorted order) gives the
foreground mask used to split the metrics into foreground and background pixels.
"""
from pathlib import Path

import numpy as np
import torch.utils.data

from datasets.io import DatasetError, read_image, read_image_size, read_segmentation
from datasets.scenes import read_scene, read_scene_list
from kitti_eval.depth_metrics import evaluation_mask


def crawl_validation(root):
    """``(frames, depths, segmentations)``: parallel lists of paths of every validation frame."""
    root = Path(root)
    _, names = read_scene_list(root, train=False)
    frames, depths, segmentations = [], [], []
    for name in names:
        scene = read_scene(root, name, required=('segmentation',), intrinsics=False, depth=True)
        frames.extend(scene.frames)
        depths.extend(scene.depths)
        segmentations.extend(scene.segmentations)
    if not frames:
        raise DatasetError(root / 'val.txt', "the listed scenes hold no frame")
    return frames, depths, segmentations


def read_depth(path, expected_hw):
    """Read a ``[H,W]`` ground-truth depth ``.npy`` as float32 and check its size."""
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(path, f"not a readable .npy array ({error})") from None
    if not (np.issubdtype(depth.dtype, np.number) or depth.dtype == bool):
        raise DatasetError(path, f"depth must be a numeric array, got dtype {depth.dtype}")
    depth = np.squeeze(depth)
    if depth.shape != tuple(expected_hw):
        raise DatasetError(path, f"depth has shape {list(depth.shape)}, "
                                 f"the frame is {expected_hw[0]}x{expected_hw[1]} (HxW)")
    return depth.astype(np.float32)


def check_depth_range(path, frame):
    """Raise DatasetError when the depth map ``path`` (of the image ``frame``) has no pixel the metrics use
    (``1e-3 < depth < 80`` inside the Garg crop): depth in other units than metres (millimetres, the 1/256 m
    of KITTI's depth PNGs) leaves validation with nothing to measure."""
    depth = read_depth(path, read_image_size(frame))
    if not evaluation_mask(torch.from_numpy(depth)).any():
        raise DatasetError(path, f"no depth value in (0.001, 80) inside the evaluation crop (values "
                                 f"{np.nanmin(depth):.4g}..{np.nanmax(depth):.4g}): ground truth must be in metres, "
                                 f"0 = no measurement")


class ValidationSet(torch.utils.data.Dataset):
    """Validation frames with depth and foreground masks.

    ``__getitem__`` returns ``(img, depth, fg_mask)``: ``img`` ``[H,W,3]`` float32 0-255 (or the
    transform's output, e.g. a ``[3,H,W]`` normalised tensor), ``depth`` ``[H,W]`` float32,
    ``fg_mask`` ``[H,W]`` bool (pixel of any instance).

    Args:
        root: dataset folder (scenes from ``val.txt``).
        transform: a deterministic :mod:`datasets.custom_transforms` callable, e.g. ``valid_transform()``.
    """

    def __init__(self, root, transform=None):
        self.root = Path(root)
        self.transform = transform
        self.frames, self.depths, self.segmentations = crawl_validation(self.root)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        img = read_image(self.frames[index]).astype(np.float32)
        hw = img.shape[:2]
        depth = read_depth(self.depths[index], hw)
        fg_mask = (np.asarray(read_segmentation(self.segmentations[index], hw)[1:]) > 0.5).any(axis=0)
        if self.transform is not None:
            images, _, _ = self.transform([img], [], None)
            img = images[0]
        return img, depth, fg_mask
