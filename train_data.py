"""The data of a training run: the training and validation loaders, the epoch's batches, a batch on the device."""
import math

import torch

from datasets.custom_transforms import train_transform, valid_transform
from datasets.io import DatasetError, read_image_size
from datasets.samplers import EpochSampler
from datasets.sequence_folders import SequenceFolder
from datasets.validation_folders import ValidationSet, check_depth_range
from network_input import size_problem
from preemption import ignore_stop_signals


DEBUG_EPOCH_SIZE = 6


def check_frame_sizes(frames):
    """Raise DatasetError unless every frame of ``frames`` (paths) has one size whose sides are multiples of 32.

    DispResNet halves the resolution five times; a batch needs one frame size.
    """
    first = read_image_size(frames[0])
    problem = size_problem(*first)
    if problem:
        raise DatasetError(frames[0], f"frame is {problem}: resize the dataset "
                                      f"(data/prepare_train_data.py --img-height/--img-width)")
    for path in frames[1:]:
        size = read_image_size(path)
        if size != first:
            raise DatasetError(path, f"frame is {size[0]}x{size[1]} (HxW), {frames[0]} is {first[0]}x{first[1]}: "
                                     f"all frames of a dataset need one size")


def batches_per_epoch(args, num_samples, dist_ctx):
    """Training iterations per epoch: ``--epoch-size`` (0 = the whole dataset), at most what the data holds."""
    per_process = math.ceil(num_samples / dist_ctx.world_size)
    available = per_process // args.batch_size if dist_ctx.enabled else math.ceil(per_process / args.batch_size)
    wanted = args.epoch_size or available
    if args.debug_mode:
        wanted = min(wanted, DEBUG_EPOCH_SIZE)
    return max(min(wanted, available), 1)


def make_loaders(args, dist_ctx):
    """Training and validation DataLoaders.

    The training order is an :class:`datasets.samplers.EpochSampler` (a function of ``--seed`` and the
    epoch, this process's share under torchrun, exactly ``--epoch-size`` batches) and the augmentation
    a function of ``(seed, epoch, sample)``, so a resumed run repeats the batches of an uninterrupted
    one.  Workers are started per epoch (they take the epoch from the dataset) and leave stop
    signals to the main process.
    """
    transform = valid_transform() if args.no_input_aug else train_transform()
    train_set = SequenceFolder(args.data, train=True, seed=args.seed, shuffle=not args.no_shuffle,
                               max_num_instances=args.mni, sequence_length=args.sequence_length,
                               transform=transform, begin_idx=args.begin_idx, cache=not args.no_cache)
    check_frame_sizes([scene.frames[0] for scene in train_set.scenes])
    if args.with_gt:
        val_set = ValidationSet(args.data, transform=valid_transform())
        check_frame_sizes(val_set.frames)
        check_depth_range(val_set.depths[0], val_set.frames[0])
    else:
        val_set = SequenceFolder(args.data, train=False, seed=args.seed, shuffle=not args.no_shuffle,
                                 max_num_instances=args.mni, sequence_length=args.sequence_length,
                                 transform=valid_transform(), cache=not args.no_cache)
        check_frame_sizes([scene.frames[0] for scene in val_set.scenes])
        val_set = torch.utils.data.Subset(val_set, range(max(1, len(val_set) // 10)))
    sampler = EpochSampler(len(train_set), args.seed, shuffle=not args.debug_mode,
                           num_replicas=dist_ctx.world_size, rank=dist_ctx.rank,
                           num_samples=batches_per_epoch(args, len(train_set), dist_ctx) * args.batch_size)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
        pin_memory=torch.cuda.is_available(), drop_last=dist_ctx.enabled, worker_init_fn=ignore_stop_signals)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, shuffle=False,
                                             num_workers=args.workers, pin_memory=torch.cuda.is_available(),
                                             worker_init_fn=ignore_stop_signals)
    return train_loader, val_loader


def start_epoch(loader, state):
    """Point the loader at epoch ``state.epoch``, skipping the batches already taken (a mid-epoch resume)."""
    loader.dataset.set_epoch(state.epoch)
    loader.sampler.set_epoch(state.epoch, start=state.step_in_epoch * loader.batch_size)


def to_device(batch, device):
    """Move a SequenceFolder batch to ``device``: ``(tgt, refs, K, tgt_insts, ref_insts)``."""
    tgt_img, ref_imgs, intrinsics, _, tgt_insts, ref_insts = batch
    move = lambda t: t.to(device, non_blocking=True).float()  # noqa: E731
    return move(tgt_img), [move(r) for r in ref_imgs], move(intrinsics), [move(t) for t in tgt_insts], \
        [move(r) for r in ref_insts]
