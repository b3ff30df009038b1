"""Joint augmentation of a sample's frames, instance masks and intrinsics (same random draw for all).

Every transform is called as ``transform(images, masks, intrinsics, rng)`` and returns
``(images, masks, intrinsics)``:

* ``images``: list of ``[H,W,C]`` float32 arrays, pixel values 0-255 (tensors ``[C,H,W]`` after
  :class:`ArrayToTensor`);
* ``masks``: list of ``[M,H,W]`` float32 instance arrays (any ``M``, also 1 for ``mni = 0``);
* ``intrinsics``: ``[3,3]`` array for the current image size, or ``None``;
* ``rng``: a ``numpy.random.Generator``; random transforms draw from it only, so a seeded
  generator reproduces the augmentation exactly.

Pixel centres lie at integer coordinates (the project convention), so the intrinsics updates are
exact: a flip maps ``u -> W - 1 - u`` and a resize by ``s`` maps ``u -> s (u + 0.5) - 0.5``
(the sampling of ``cv2.resize``), then the crop shifts by the offset.
"""
import cv2
import numpy as np
import torch

from network_input import IMAGE_MEAN, IMAGE_STD

MAX_SCALE = 1.15


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, images, masks, intrinsics, rng=None):
        for transform in self.transforms:
            images, masks, intrinsics = transform(images, masks, intrinsics, rng)
        return images, masks, intrinsics


def _require_rng(rng, name):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} needs a numpy.random.Generator, got {type(rng).__name__}")


class RandomHorizontalFlip:
    """Mirror everything left-right with probability ``probability``; ``cx -> W - 1 - cx``."""

    def __init__(self, probability=0.5):
        self.probability = probability

    def __call__(self, images, masks, intrinsics, rng):
        _require_rng(rng, 'RandomHorizontalFlip')
        if rng.random() >= self.probability:
            return images, masks, intrinsics
        width = images[0].shape[1]
        images = [cv2.flip(image, 1).reshape(image.shape) for image in images]
        masks = [mask[:, :, ::-1].copy() for mask in masks]
        return images, masks, flip_intrinsics(intrinsics, width)


def flip_intrinsics(intrinsics, width):
    """Intrinsics of the left-right mirrored image: ``[3,3]`` (skew negated, ``cx -> W - 1 - cx``)."""
    if intrinsics is None:
        return None
    flipped = np.array(intrinsics, np.float64)
    flipped[0, 1] = -flipped[0, 1]
    flipped[0, 2] = width - 1 - flipped[0, 2]
    return flipped


class RandomScaleCrop:
    """Zoom in by independent random factors in ``[1, max_scale)`` along x and y, then crop back
    to the input size at a random offset.  Images are resized bilinearly, masks by nearest
    neighbour (pixel-centre aligned), intrinsics scaled and shifted."""

    def __init__(self, max_scale=MAX_SCALE):
        self.max_scale = max_scale

    def __call__(self, images, masks, intrinsics, rng):
        _require_rng(rng, 'RandomScaleCrop')
        height, width = images[0].shape[:2]
        scale_x, scale_y = rng.uniform(1, self.max_scale, 2)
        scaled_h, scaled_w = int(height * scale_y), int(width * scale_x)
        offset_y = int(rng.integers(scaled_h - height + 1))
        offset_x = int(rng.integers(scaled_w - width + 1))
        crop = (slice(offset_y, offset_y + height), slice(offset_x, offset_x + width))
        images = [_resize_image(image, scaled_w, scaled_h)[crop] for image in images]
        rows = _nearest_source(height, scaled_h, offset_y)
        cols = _nearest_source(width, scaled_w, offset_x)
        masks = [mask.take(rows, axis=1).take(cols, axis=2) for mask in masks]
        return images, masks, scale_crop_intrinsics(intrinsics, scaled_w / width, scaled_h / height,
                                                    offset_x, offset_y)


def _resize_image(image, width, height):
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(height, width, -1)


def _nearest_source(size, scaled_size, offset):
    """Source index of each kept output pixel of a nearest resize ``size -> scaled_size`` cropped at ``offset``."""
    centres = (np.arange(size) + offset + 0.5) * (size / scaled_size)
    return np.minimum(np.floor(centres).astype(np.int64), size - 1)


def scale_crop_intrinsics(intrinsics, scale_x, scale_y, offset_x, offset_y):
    """Intrinsics after resizing by ``(scale_x, scale_y)`` and cropping at ``(offset_x, offset_y)``: ``[3,3]``.

    With pixel centres at integers, ``u' = scale_x (u + 0.5) - 0.5 - offset_x`` (same for v), so
    row 0 becomes ``scale_x * row0 + (0.5 (scale_x - 1) - offset_x) * row2``.
    """
    if intrinsics is None:
        return None
    out = np.array(intrinsics, np.float64)
    out[0] = scale_x * out[0] + (0.5 * (scale_x - 1) - offset_x) * out[2]
    out[1] = scale_y * out[1] + (0.5 * (scale_y - 1) - offset_y) * out[2]
    return out


class ArrayToTensor:
    """``[H,W,C]`` arrays (0-255) -> ``[C,H,W]`` float tensors (0-1); masks -> float tensors."""

    def __call__(self, images, masks, intrinsics, rng=None):
        images = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32)) / 255
                  for image in images]
        masks = [torch.from_numpy(np.ascontiguousarray(mask, np.float32)) for mask in masks]
        return images, masks, intrinsics


class Normalize:
    """``(image - mean) / std`` on the image tensors (masks untouched); default maps 0..1 to -1..1."""

    def __init__(self, mean=IMAGE_MEAN, std=IMAGE_STD):
        self.mean = mean
        self.std = std

    def __call__(self, images, masks, intrinsics, rng=None):
        return [(image - self.mean) / self.std for image in images], masks, intrinsics


def train_transform(max_scale=MAX_SCALE):
    """The training augmentation of the official code: flip, scale-crop, to tensor, normalise."""
    return Compose([RandomHorizontalFlip(), RandomScaleCrop(max_scale), ArrayToTensor(), Normalize()])


def valid_transform():
    """The validation transform: to tensor, normalise."""
    return Compose([ArrayToTensor(), Normalize()])
