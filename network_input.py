"""What a frame must be to enter the networks: its size and its normalisation, in one place.

The networks take float tensors ``[B,3,H,W]`` normalised with mean 0.5, std 0.5 (range -1..1), with
``H`` and ``W`` multiples of 32 (the ResNet encoder halves the resolution five times), at least 64.  Training (the
transforms of :mod:`datasets.custom_transforms`), validation, ``test_disp.py``, ``test_pose.py``,
``export.py`` and the demo prepare frames with the functions below; frames are decoded with OpenCV
(:func:`datasets.io.read_image`) and resized as data preparation resizes them (:func:`resize_frame`).
"""
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.io import read_image

IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
SIZE_MULTIPLE = 32
# DispResNet's decoder reflection-pads the 1/32-resolution features by one pixel, which needs at least two
# of them: a 32-pixel side passes the encoder and then fails inside PyTorch's padding.
MIN_SIDE = 2 * SIZE_MULTIPLE


def is_network_side(length):
    """True when an image side of ``length`` pixels can enter the networks (a multiple of 32, at least 64)."""
    return length >= MIN_SIDE and length % SIZE_MULTIPLE == 0


def size_problem(height, width):
    """``None`` when ``height x width`` frames can enter the networks, else a message fragment naming the size."""
    if is_network_side(height) and is_network_side(width):
        return None
    return (f"{height}x{width} (HxW); the networks need sides that are positive multiples of {SIZE_MULTIPLE}, "
            f"at least {MIN_SIDE} (e.g. 256x832, 128x416)")


def check_size_flags(flags):
    """One-line ValueError for the first ``{'--img-height': value, ...}`` that is not a network side (None: not given)."""
    for flag, value in flags.items():
        if value is not None and not is_network_side(value):
            raise ValueError(f"{flag} {value}: must be a positive multiple of {SIZE_MULTIPLE}, at least {MIN_SIDE} "
                             f"(e.g. 256x832)")


def resize_frame(rgb, height, width):
    """``[H_in,W_in,3]`` uint8 -> ``[height,width,3]`` uint8: area averaging when shrinking, bilinear otherwise."""
    in_height, in_width = rgb.shape[:2]
    if (in_height, in_width) == (height, width):
        return rgb
    shrinking = height <= in_height and width <= in_width
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalise(pixels):
    """Unit-range images (``0..1``, any shape) -> network range: ``(pixels - 0.5) / 0.5``."""
    return (pixels - IMAGE_MEAN) / IMAGE_STD


def denormalise(img):
    """Network-range images (any shape) -> unit range ``0..1`` (not clamped): the inverse of :func:`normalise`."""
    return img * IMAGE_STD + IMAGE_MEAN


def to_network_input(rgb):
    """``[H,W,3]`` frame (uint8, or float 0-255) -> ``[3,H,W]`` float32 tensor normalised for the networks."""
    pixels = torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.float32).transpose(2, 0, 1))) / 255
    return normalise(pixels)


def load_network_input(path, height, width):
    """The frame ``path`` resized to ``height x width`` (:func:`resize_frame`) and normalised: ``[3,H,W]`` float32.

    Raises:
        datasets.io.DatasetError: a missing or undecodable image (one line naming the file).
    """
    return to_network_input(resize_frame(read_image(path), height, width))


class ImageList(Dataset):
    """The listed images, resized and normalised for the network (:func:`network_input.load_network_input`)."""

    def __init__(self, paths, height, width):
        self.paths, self.height, self.width = list(paths), height, width

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return load_network_input(self.paths[index], self.height, self.width)
