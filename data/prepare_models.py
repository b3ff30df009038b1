"""Optical flow and instance masks for ``data/prepare_train_data.py``.

Flow: OpenCV DIS (MEDIUM preset, grey images; offline, CPU) or torchvision RAFT.  Masks: torchvision
Mask R-CNN (COCO movable classes), precomputed files (``--masks-from``) or none.  Learned models only
run with weights found in the torch hub cache (``torch.hub.get_dir()/checkpoints/``); nothing is
ever downloaded: a missing file stops the run with a one-line message naming the exact path.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from checkpoint_io import CheckpointError, load_network_weights
from data.prepare_sources import PrepareError

MOVABLE_COCO_CLASSES = {1: 'person', 2: 'bicycle', 3: 'car', 4: 'motorcycle', 6: 'bus', 8: 'truck'}
MASK_BINARY_THRESHOLD = 0.5
RAFT_PADDING = 8
RAFT_MIN_SIZE = 128  # its correlation pyramid needs feature maps of at least 16x16 (1/8 resolution)
TORCHVISION_URL = 'https://download.pytorch.org/models/'
RAFT_WEIGHTS = {'large': 'raft_large_C_T_SKHT_V2-ff5fadd5.pth', 'small': 'raft_small_C_T_V2-01064c6d.pth'}
MASKRCNN_WEIGHTS = {'v2': 'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth', 'v1': 'maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth'}
MASK_FILE_EXTENSIONS = ('.npy', '.png')


class MissingWeightsError(FileNotFoundError):
    """Weights of a learned model are not in the torch hub cache (one-line message with the path)."""


@dataclass(frozen=True)
class WeightsChoice:
    """A learned model found in the hub cache: ``variant`` (a key of the weights table) and its ``path``."""
    variant: str
    path: str


def hub_checkpoints_dir():
    """``torch.hub.get_dir()/checkpoints`` (moves with ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / 'checkpoints'


def find_weights(table, what, alternative):
    """The first file of ``table`` (``{variant: file name}``, in order of preference) in the hub cache.

    Raises:
        MissingWeightsError: none is there; the message names the exact paths and where to get them.
    """
    folder = hub_checkpoints_dir()
    for variant, name in table.items():
        if (folder / name).is_file():
            return WeightsChoice(variant, str(folder / name))
    first, *others = table.values()
    also = ''.join(f" (or {folder / name})" for name in others)
    raise MissingWeightsError(f"{what} weights not found: expected {folder / first}{also}; download it from "
                              f"{TORCHVISION_URL}{first} into that folder (TORCH_HOME moves it), or {alternative}")


def load_state_dict(model, path):
    """Load a weights file into ``model`` strictly, through :mod:`checkpoint_io` (tensors only)."""
    try:
        load_network_weights(model, path)
    except CheckpointError as error:
        raise PrepareError(f"cannot load these weights into {type(model).__name__}: {error}") from None
    return model.eval()


class DisFlow:
    """OpenCV DIS optical flow (MEDIUM preset) on grey images."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, image_a, image_b):
        """Flows of two ``[H,W,3]`` uint8 RGB frames: ``(a -> b, b -> a)``, each ``[H,W,2]`` float32."""
        grey_a, grey_b = (cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in (image_a, image_b))
        return self.dis.calc(grey_a, grey_b, None), self.dis.calc(grey_b, grey_a, None)


class RaftFlow:
    """torchvision RAFT (large or small) with weights from a file.

    Frames are padded (replicating the border) on the right and bottom to multiples of 8 and to at
    least 128 pixels, and the flows cropped back.
    """

    def __init__(self, weights, device):
        from torchvision.models.optical_flow import raft_large, raft_small
        builder = raft_large if weights.variant == 'large' else raft_small
        self.model = load_state_dict(builder(weights=None), weights.path).to(device)
        self.device = device

    def __call__(self, image_a, image_b):
        """Flows of two ``[H,W,3]`` uint8 RGB frames: ``(a -> b, b -> a)``, each ``[H,W,2]`` float32."""
        height, width = image_a.shape[:2]
        frames = torch.from_numpy(np.stack([image_a, image_b])).permute(0, 3, 1, 2).float() / 127.5 - 1
        pad = (0, padded_size(width) - width, 0, padded_size(height) - height)
        frames = F.pad(frames, pad, mode='replicate').to(self.device)
        with torch.inference_mode():
            flows = self.model(frames, frames.flip(0))[-1][:, :, :height, :width]
        flows = flows.permute(0, 2, 3, 1).float().cpu().numpy()
        return flows[0], flows[1]


def padded_size(size):
    """Smallest multiple of 8 that is at least ``size`` and at least 128 (what RAFT accepts)."""
    return max(size + (-size % RAFT_PADDING), RAFT_MIN_SIZE)


class NoMasks:
    """No instances: every frame gets ``[0,H,W]`` masks (``[1,H,W]`` files)."""

    def __call__(self, image, scene, stem, geometry):
        return np.zeros((0,) + image.shape[:2], bool)


class MaskRcnnMasks:
    """torchvision Mask R-CNN (COCO): movable classes above ``score_threshold``, binarised at 0.5.

    ``min_size`` is the short side the detector resizes frames to (torchvision's default 800).
    """

    def __init__(self, weights, score_threshold, device, min_size=800):
        from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
        builder = maskrcnn_resnet50_fpn_v2 if weights.variant == 'v2' else maskrcnn_resnet50_fpn
        model = builder(weights=None, weights_backbone=None, num_classes=91,
                        box_score_thresh=min(score_threshold, 0.05), min_size=min_size,
                        max_size=max(1333, 2 * min_size))
        self.model = load_state_dict(model, weights.path).to(device)
        self.score_threshold = score_threshold
        self.device = device

    def __call__(self, image, scene, stem, geometry):
        """``[H,W,3]`` uint8 RGB stored frame -> ``[N,H,W]`` bool instance masks, best score first."""
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device)
        with torch.inference_mode():
            found = self.model([tensor])[0]
        movable = torch.isin(found['labels'], torch.tensor(list(MOVABLE_COCO_CLASSES), device=found['labels'].device))
        keep = movable & (found['scores'] >= self.score_threshold)
        masks = (found['masks'][keep, 0] > MASK_BINARY_THRESHOLD).cpu().numpy()
        return masks[masks.any(axis=(1, 2))]


class FileMasks:
    """Precomputed masks ``DIR/SCENE/STEM.{npy,png}`` or ``DIR/STEM.{npy,png}``, resized to the stored frames."""

    def __init__(self, root):
        self.root = Path(root)

    def find(self, scene, stem):
        """Path of the mask file of frame ``stem`` of ``scene`` (one-line error when there is none)."""
        for folder in (self.root / scene, self.root):
            for extension in MASK_FILE_EXTENSIONS:
                if (folder / f'{stem}{extension}').is_file():
                    return folder / f'{stem}{extension}'
        raise PrepareError(f"{self.root / scene / stem}.npy: mask file of frame '{stem}' not found (nor .png, "
                           f"nor {stem}.npy/.png directly in --masks-from {self.root})")

    def __call__(self, image, scene, stem, geometry):
        return geometry.masks(read_instance_file(self.find(scene, stem)))


def read_instance_file(path):
    """Instance masks of a ``.npy`` (``[1+N,H,W]``, ``[N,H,W]`` or ``[H,W]`` ids) or ``.png`` id image.

    Empty channels are dropped (so channel 0 of a ``[1+N,H,W]`` file is).  In an id image 0 is the
    background and every other value one instance (a colour image: every colour but black).

    Returns:
        ``[N,H,W]`` bool.
    """
    path = Path(path)
    if path.suffix == '.npy':
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise PrepareError(f"{path}: not a readable .npy array ({error})") from None
        if array.ndim == 3:
            masks = array != 0
            return masks[masks.any(axis=(1, 2))]
        if array.ndim != 2:
            raise PrepareError(f"{path}: masks must be [1+N,H,W], [N,H,W] or an [H,W] id map, got {list(array.shape)}")
        return instance_masks_from_ids(array)
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise PrepareError(f"{path}: cannot decode the instance-id image")
    if ids.ndim == 3:
        colour = ids[..., :3].astype(np.int64)
        ids = (colour[..., 2] << 16) | (colour[..., 1] << 8) | colour[..., 0]
    return instance_masks_from_ids(ids)


def instance_masks_from_ids(ids):
    """``[H,W]`` instance ids (0 = background) -> ``[N,H,W]`` bool, ids in increasing order."""
    values = np.unique(ids)
    values = values[values != 0]
    return ids[None] == values[:, None, None]
