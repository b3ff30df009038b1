"""Training samples of KITTI-VIS / Cityscapes-VIS with video-instance association (docs/ARCHITECTURE.md, "Data layout").

The scenes (layout in :mod:`datasets.scenes`) are those of ``ROOT/train.txt`` or ``ROOT/val.txt``,
each with its segmentation and forward/backward flows.
"""
import math
import random
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from datasets.association import associate_stored, binary_instances, compose_flows, drop_empty_pairs, pack_pairs
from datasets.association_cache import DEFAULT_SUBDIR, AssociationCache
from datasets.io import DatasetError, read_image, read_image_size, read_segmentation
from datasets.scenes import read_flow, read_scene, read_scene_list


def reference_shifts(sequence_length):
    """Offsets of the reference frames: ``[-d..-1, 1..d]`` with ``d = (sequence_length - 1) // 2``."""
    if sequence_length < 3 or sequence_length % 2 == 0:
        raise ValueError(f"sequence_length must be an odd number >= 3, got {sequence_length}")
    demi = (sequence_length - 1) // 2
    return [s for s in range(-demi, demi + 1) if s != 0]


class SequenceFolder(torch.utils.data.Dataset):
    """Target frame, reference frames and their associated instances.

    ``__getitem__`` returns ``(tgt_img, ref_imgs, intrinsics, intrinsics_inv, tgt_insts, ref_insts)``:

    * with the training transform: ``tgt_img`` ``[3,H,W]`` float tensor normalised to -1..1,
      ``ref_imgs`` a list (one per reference, order t-d..t-1, t+1..t+d) of ``[3,H,W]``;
    * with ``transform=None``: frames as ``[H,W,3]`` float32 arrays, pixel values 0-255;
    * ``intrinsics``, ``intrinsics_inv``: ``[3,3]`` float32 arrays for the returned frames;
    * ``tgt_insts[i]``, ``ref_insts[i]``: ``[1+mni,H,W]`` float32 (tensors after ``ArrayToTensor``)
      for reference ``i``; channel 0 holds the number ``n`` of matched instances everywhere,
      channel ``k`` (1..n) of both is the same object, channels above ``n`` are zero.

    Args:
        root: dataset folder.
        train: read ``train.txt`` (else ``val.txt``).
        seed: seeds the shuffle and the augmentation (see :meth:`sample_generator`).
        shuffle: shuffle the sample list (before ``proportion`` / ``begin_idx``).
        max_num_instances: ``mni``, instance pairs kept per reference (0 = no instances).
        sequence_length: odd number of frames per sample (3, 5, ...).
        transform: a :mod:`datasets.custom_transforms` callable ``(images, masks, intrinsics, rng)``.
        proportion: keep the first ``floor(len * proportion)`` samples.
        begin_idx: then drop the samples before this index.
        cache: cache associations on disk (``False`` recomputes them every time).
        cache_dir: cache folder, default ``ROOT/.cache/association``.
    """

    def __init__(self, root, train=True, seed=None, shuffle=True, max_num_instances=20, sequence_length=3,
                 transform=None, proportion=1, begin_idx=None, cache=True, cache_dir=None):
        if max_num_instances < 0:
            raise ValueError(f"max_num_instances must be >= 0, got {max_num_instances}")
        self.root = Path(root)
        self.seed = seed
        self.mni = max_num_instances
        self.transform = transform
        self.shifts = reference_shifts(sequence_length)
        self.scenes = self._crawl(train, sequence_length)
        # the size each scene's cam.txt is for (its first frame's), read once: every sampled frame must have it
        self.scene_sizes = [read_image_size(scene.frames[0]) for scene in self.scenes]
        samples = [(s, t) for s, scene in enumerate(self.scenes)
                   for t in range(-self.shifts[0], len(scene.frames) - self.shifts[-1])]
        if shuffle:
            random.Random(seed).shuffle(samples)
        samples = samples[:int(math.floor(len(samples) * proportion))]
        self.samples = samples[begin_idx:] if begin_idx else samples
        self.cache = AssociationCache(cache_dir or self.root / DEFAULT_SUBDIR) if cache else None
        self.epoch = 0

    def _crawl(self, train, sequence_length):
        list_path, names = read_scene_list(self.root, train)
        scenes = []
        for name in names:
            scene = read_scene(self.root, name)
            if len(scene.frames) < sequence_length:
                warnings.warn(f"{self.root / 'image' / name}: {len(scene.frames)} frames, fewer than the "
                              f"sequence length {sequence_length}; scene skipped", RuntimeWarning)
                continue
            scenes.append(scene)
        if not scenes:
            raise DatasetError(list_path, f"no listed scene has at least {sequence_length} frames")
        return scenes

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch):
        """Select the augmentation draws of ``epoch`` (see :meth:`sample_generator`)."""
        self.epoch = epoch

    def sample_generator(self, index):
        """The augmentation generator of sample ``index`` in the current epoch.

        Seeded from ``(seed, epoch, index)``: the augmentation of a sample depends neither on the
        worker that loads it nor on what was loaded before, so a run resumed at any epoch (or batch)
        repeats the draws of an uninterrupted one.  Without a seed, the draws are not reproducible.
        """
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index):
        scene_index, target = self.samples[index]
        scene = self.scenes[scene_index]
        frame_indices = [target] + [target + s for s in self.shifts]
        images = self._read_frames(scene, self.scene_sizes[scene_index], frame_indices)
        height, width = images[0].shape[:2]
        masks = {k: binary_instances(read_segmentation(scene.segmentations[k], (height, width)))
                 for k in frame_indices}
        tgt_insts, ref_insts = [], []
        for shift in self.shifts:
            first, second = sorted((target, target + shift))
            pairs = self._pair_matches(scene, first, second, masks[first], masks[second], (height, width))
            inst_first, inst_second = pack_pairs(pairs - 1, masks[first], masks[second], self.mni)
            tgt_insts.append(inst_first if shift > 0 else inst_second)
            ref_insts.append(inst_second if shift > 0 else inst_first)
        intrinsics = np.array(scene.intrinsics, np.float64)
        if self.transform is not None:
            images, insts, intrinsics = self.transform(images, tgt_insts + ref_insts, intrinsics,
                                                              self.sample_generator(index))
            tgt_insts, ref_insts = insts[:len(self.shifts)], insts[len(self.shifts):]
        for i in range(len(self.shifts)):
            tgt_insts[i], ref_insts[i] = drop_empty_pairs(tgt_insts[i], ref_insts[i])
        return (images[0], images[1:], intrinsics.astype(np.float32), np.linalg.inv(intrinsics).astype(np.float32),
                tgt_insts, ref_insts)

    @staticmethod
    def _read_frames(scene, size, frame_indices):
        """The frames, each checked to have ``size`` ``(height, width)``, that of the scene's first frame (the
        size its ``cam.txt`` is for, and, by ``train_data.check_frame_sizes``, that of every scene's first frame)."""
        images = [read_image(scene.frames[k]).astype(np.float32) for k in frame_indices]
        height, width = size
        for k, image in zip(frame_indices, images):
            if image.shape[:2] != (height, width):
                raise DatasetError(scene.frames[k], f"frame is {image.shape[0]}x{image.shape[1]} (HxW), the first "
                                                    f"frame of its scene, {scene.frames[0].name}, is {height}x{width}")
        return images

    def _pair_matches(self, scene, first, second, masks_first, masks_second, frame_hw):
        """Matches ``[k,2]`` (stored channel in ``first``, in ``second``) of two frames, ``first < second``."""
        forward = scene.flows_forward[first:second]
        backward = scene.flows_backward[first:second][::-1]
        if self.cache is None:
            return self._associate(masks_first, masks_second, forward, backward, frame_hw)
        key = self.cache.key([scene.segmentations[first], scene.segmentations[second], *forward, *backward])
        pairs = self.cache.load(key, len(masks_first), len(masks_second))
        if pairs is None:
            pairs = self._associate(masks_first, masks_second, forward, backward, frame_hw)
            self.cache.store(key, pairs)
        return pairs

    @staticmethod
    def _associate(masks_first, masks_second, forward_files, backward_files, frame_hw):
        """Run the association on the stored channel numbering: ``[k,2]`` int64 channels (1-based)."""
        flow_ab = compose_flows([read_flow(path, frame_hw) for path in forward_files])
        flow_ba = compose_flows([read_flow(path, frame_hw) for path in backward_files])
        return associate_stored(masks_first, masks_second, flow_ab, flow_ba)

