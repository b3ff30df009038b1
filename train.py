"""Train Insta-DM: DispResNet, EgoPoseNet and ObjPoseNet with the two-stage, instance-aware projection.

    python train.py DATA --name NAME [flags]      (see scripts/train_resnet_256_kt.sh / _cs.sh)
    torchrun --nproc_per_node 2 train.py DATA --name NAME ...   (multi-process / multi-node)

Outputs go to checkpoints/NAME/TIMESTAMP/ (or the folder given to --resume).  The step itself
(ego pose -> first projection -> object motion -> motion field -> second projection -> losses)
is in projection.py; this file holds the command line, data, optimisation, validation and logging.
"""
import argparse
import csv
import datetime
import io
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tensorboardX import SummaryWriter
from tqdm import tqdm

import models
import precision
from checkpoint_io import CheckpointError, load_file, load_network_weights
from checkpoint_set import check_member, read_manifest, recover, save_set
from cli_types import float_in, int_at_least, odd_int_at_least
from datasets.custom_transforms import train_transform, valid_transform
from datasets.io import DatasetError, read_image_size
from datasets.samplers import EpochSampler
from datasets.sequence_folders import SequenceFolder
from datasets.validation_folders import ValidationSet
from devices import select_device
from errors import one_line
from fileio import OutputError, atomic_open, check_writable_folder, new_run_folder
from kitti_eval.depth_metrics import METRIC_NAMES, compute_errors_split
from network_input import size_problem
from preemption import StopRequest, ignore_stop_signals, workers_stopped_by
from projection import LOSS_NAMES, LossOptions, unwrap
from visualization import save_breakpoint_figures, tensorboard_images

NETWORK_FILES = {'disp': 'dispnet', 'ego': 'ego_pose', 'obj': 'obj_pose'}
STATE_FILE = 'training_state.pth.tar'
RESUME_ARGS_FILE = 'args_resume.json'
DEBUG_EPOCH_SIZE = 6
FUSED_ADAM_DEVICES = ('cpu', 'cuda')
NON_NEGATIVE_INT = int_at_least(0)
POSITIVE_INT = int_at_least(1)
NON_NEGATIVE_FLOAT = float_in(0)
POSITIVE_FLOAT = float_in(0, include_low=False)
ADAM_BETA = float_in(0, 1, include_high=False)
CSV_LOSS_NAMES = ('photo_loss', 'geometry_loss', 'smooth_loss', 'scale_loss', 'mof_consistency_loss',
                  'height_loss', 'depth_loss')
SUMMARY_HEADER = ['epoch', 'train_loss', 'validation_loss']
FULL_HEADER = ['iteration'] + list(CSV_LOSS_NAMES) + ['train_loss']


def build_parser():
    parser = argparse.ArgumentParser(
        description='Learning Monocular Depth in Dynamic Scenes via Instance-Aware Projection Consistency',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('data', metavar='DIR', help='path to the KITTI-VIS / Cityscapes-VIS dataset')
    parser.add_argument('--with-gt', action='store_true', help='validate with ground-truth depth (.npy beside val frames)')
    parser.add_argument('--sequence-length', type=odd_int_at_least(3), default=3, metavar='N', help='frames per training sample')
    parser.add_argument('-mni', '--mni', type=NON_NEGATIVE_INT, default=20, help='maximum number of instances per frame (0 = rigid model)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default='euler', help='rotation parameterisation')
    parser.add_argument('--padding-mode', choices=['zeros', 'border'], default='zeros', help='padding of the warps')
    parser.add_argument('-j', '--workers', type=NON_NEGATIVE_INT, default=8, metavar='N', help='data loading workers')
    parser.add_argument('-b', '--batch-size', type=POSITIVE_INT, default=4, metavar='N', help='mini-batch size (per process)')
    parser.add_argument('--epochs', type=POSITIVE_INT, default=200, metavar='N', help='number of epochs')
    parser.add_argument('--epoch-size', type=NON_NEGATIVE_INT, default=0, metavar='N', help='iterations per epoch (0 = whole dataset)')
    parser.add_argument('--disp-lr', '--disp-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='DispResNet learning rate')
    parser.add_argument('--ego-lr', '--ego-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='EgoPoseNet learning rate')
    parser.add_argument('--obj-lr', '--obj-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='ObjPoseNet learning rate')
    parser.add_argument('--momentum', type=ADAM_BETA, default=0.9, metavar='M', help='Adam beta1')
    parser.add_argument('--beta', type=ADAM_BETA, default=0.999, metavar='M', help='Adam beta2')
    parser.add_argument('--weight-decay', '--wd', type=NON_NEGATIVE_FLOAT, default=0, metavar='W', help='weight decay')
    parser.add_argument('--print-freq', type=NON_NEGATIVE_INT, default=10, metavar='N', help='iterations between printed loss lines')
    parser.add_argument('--save-freq', type=NON_NEGATIVE_INT, default=3, metavar='N', help='epochs between kept checkpoint copies')
    parser.add_argument('--image-freq', type=NON_NEGATIVE_INT, default=250, metavar='N', help='iterations between TensorBoard images')
    parser.add_argument('--resnet-layers', type=int, default=18, choices=[18, 50], help='ResNet depth of DispResNet')
    parser.add_argument('--with-pretrain', type=int, choices=[0, 1], default=1, help='ImageNet initialisation (1) or random (0)')
    parser.add_argument('--imagenet-weights', default=None, metavar='DIR',
                        help='folder with torchvision ResNet weights (default: the torch hub cache)')
    parser.add_argument('--pretrained-disp', default=None, metavar='PATH', help='DispResNet checkpoint to start from')
    parser.add_argument('--pretrained-ego-pose', default=None, metavar='PATH', help='EgoPoseNet checkpoint to start from')
    parser.add_argument('--pretrained-obj-pose', default=None, metavar='PATH', help='ObjPoseNet checkpoint to start from')
    parser.add_argument('--seed', type=NON_NEGATIVE_INT, default=0, help='seed of data order, augmentation and initialisation')
    parser.add_argument('--log-summary', default='progress_log_summary.csv', metavar='PATH', help='per-epoch CSV')
    parser.add_argument('--log-full', default='progress_log_full.csv', metavar='PATH', help='per-iteration CSV')
    parser.add_argument('-p', '--photo-loss-weight', type=NON_NEGATIVE_FLOAT, default=2.0, metavar='W')
    parser.add_argument('-c', '--geometry-consistency-weight', type=NON_NEGATIVE_FLOAT, default=1.0, metavar='W')
    parser.add_argument('-s', '--smooth-loss-weight', type=NON_NEGATIVE_FLOAT, default=0.1, metavar='W')
    parser.add_argument('-o', '--scale-loss-weight', type=NON_NEGATIVE_FLOAT, default=0.02, metavar='W', help='object size loss weight')
    parser.add_argument('-mc', '--mof-consistency-loss-weight', type=NON_NEGATIVE_FLOAT, default=0.1, metavar='W')
    parser.add_argument('-hp', '--height-loss-weight', type=NON_NEGATIVE_FLOAT, default=0.0, metavar='W', help='height prior weight')
    parser.add_argument('-dm', '--depth-loss-weight', type=NON_NEGATIVE_FLOAT, default=0.0, metavar='W', help='mean disparity weight')
    parser.add_argument('--with-auto-mask', action='store_true', help='mask stationary pixels')
    parser.add_argument('--with-ssim', action='store_true', help='add SSIM to the photometric loss')
    parser.add_argument('--with-mask', action='store_true', help='weight the photometric loss by 1 - geometry error')
    parser.add_argument('--with-only-obj', action='store_true', help='photometric/geometry losses on instance pixels only')
    parser.add_argument('--name', required=True, help='experiment name: outputs in checkpoints/NAME/TIMESTAMP')
    parser.add_argument('--debug-mode', action='store_true', help='a few iterations per epoch, outputs in checkpoints/debug')
    parser.add_argument('--no-shuffle', action='store_true', help='keep the sample order')
    parser.add_argument('--no-input-aug', action='store_true', help='no flip / scale-crop augmentation')
    parser.add_argument('--begin-idx', type=NON_NEGATIVE_INT, default=None, help='skip the training samples before this index')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='where to train')
    parser.add_argument('--resume', default=None, metavar='DIR', help='run folder to continue (networks, optimiser, counters)')
    parser.add_argument('--debug-viz', type=NON_NEGATIVE_INT, default=0, metavar='N',
                        help='save the BREAKPOINT-1/2 figures of the first N batches to RUN/debug_viz')
    parser.add_argument('--no-cache', action='store_true', help='recompute the instance association every time')
    parser.add_argument('--checkpoint-root', default='checkpoints', metavar='DIR',
                        help='outputs go to DIR/NAME/TIMESTAMP')
    parser.add_argument('--amp', choices=sorted(precision.AMP_DTYPES), default='off',
                        help='mixed precision of the networks (geometry and losses stay float32); bf16 on CPU and '
                             'GPU, fp16 on GPU with gradient scaling')
    parser.add_argument('--channels-last', action='store_true', help='channels-last memory layout for the networks')
    parser.add_argument('--compile', action='store_true', help='torch.compile the three networks')
    parser.add_argument('--depth-scale', type=POSITIVE_FLOAT, default=1.0, metavar='S',
                        help='depth = S / disparity inside the step (1: the official objective; an experiment '
                             'option of the ablation runner, see README "Science")')
    parser.add_argument('--sync-bn', action='store_true',
                        help='under torchrun, synchronise BatchNorm statistics across processes (SyncBatchNorm)')
    return parser


class Distributed:
    """Process group of a torchrun launch (rank 0 of 1 when not distributed)."""

    def __init__(self, device_kind):
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if self.enabled:
            if device_kind == 'cuda':
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group('nccl' if device_kind == 'cuda' else 'gloo')

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, model, device):
        """``model`` in DistributedDataParallel when distributed (else as it is).

        The gradient all-reduce then overlaps the backward pass.  ``find_unused_parameters``: the
        multi-scale disparity heads are never used by the step, and ObjPoseNet is not used by a batch
        without instances.  Parameters and buffers are broadcast from rank 0 when wrapping, and the
        buffers (BatchNorm statistics) again at every forward.
        """
        if not self.enabled:
            return model
        device_ids = [device.index] if device.type == 'cuda' else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def all_finite(self, value):
        """True when ``value`` is finite on every process."""
        finite = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
        if self.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def any_true(self, flag):
        """True when ``flag`` is true on any process (so that every process stops at the same step)."""
        if not self.enabled:
            return bool(flag)
        device = torch.device('cuda', self.local_rank) if dist.get_backend() == 'nccl' else torch.device('cpu')
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled:
            dist.destroy_process_group()


def make_run_folder(args):
    """The resumed folder, or a new ``ROOT/NAME/TIMESTAMP`` (``ROOT/debug/...`` in debug mode), not created yet.

    The location is checked for writing first (an existing file, ``/proc``, a read-only file system
    are refused with one line).  A new folder is never an existing one: a second run started in the
    same second gets ``TIMESTAMP-2``.
    """
    if args.resume:
        if not os.path.isdir(args.resume):
            raise CheckpointError(f"--resume {args.resume}: no such run folder")
        check_writable_folder(args.resume, '--resume')
        recover(args.resume)
        if not os.path.isfile(os.path.join(args.resume, STATE_FILE)):
            raise CheckpointError(f"{os.path.join(args.resume, STATE_FILE)}: not found; --resume takes a run folder "
                                  f"holding a saved checkpoint")
        return args.resume
    check_writable_folder(args.checkpoint_root, '--checkpoint-root')
    return str(new_run_folder(os.path.join(args.checkpoint_root, 'debug' if args.debug_mode else args.name)))


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


def model_config(args, frame_hw=None):
    """The :class:`models.ModelConfig` of the run, saved in its network checkpoints.

    ``frame_hw``: the ``(height, width)`` of the training frames (None: the default size).
    """
    size = {} if frame_hw is None else {'img_height': int(frame_hw[0]), 'img_width': int(frame_hw[1])}
    return models.ModelConfig(resnet_layers=args.resnet_layers, rotation_mode=args.rotation_mode, mni=args.mni,
                              depth_scale=args.depth_scale, **size)


def build_networks(args, device, config=None):
    """The three networks, ImageNet-initialised with ``--with-pretrain 1`` and loaded from ``--pretrained-*``."""
    nets = models.build_networks(config or model_config(args),
                                 models.imagenet_initialisation(args.with_pretrain, args.imagenet_weights))
    for key, path in (('disp', args.pretrained_disp), ('ego', args.pretrained_ego_pose), ('obj', args.pretrained_obj_pose)):
        if path:
            load_network_weights(nets[key], path)
            print(f"=> {type(nets[key]).__name__} weights from {path}")
    return {key: net.to(device) for key, net in nets.items()}


def build_optimizer(args, nets):
    """Adam with the official parameter groups (height prior at a tenth of the DispResNet rate).

    On CPU and CUDA the fused Adam kernel is used: the same update (to float rounding) in one pass
    over the parameters instead of a dozen (about 50 ms less per step on a 2-core CPU).
    """
    disp = nets['disp']
    groups = []
    if args.disp_lr:
        groups += [{'params': list(disp.encoder.parameters()) + list(disp.decoder.parameters()), 'lr': args.disp_lr},
                   {'params': [disp.obj_height_prior], 'lr': args.disp_lr * 0.1}]
    if args.ego_lr:
        groups.append({'params': list(nets['ego'].parameters()), 'lr': args.ego_lr})
    if args.obj_lr:
        groups.append({'params': list(nets['obj'].parameters()), 'lr': args.obj_lr})
    device_type = nets['disp'].obj_height_prior.device.type
    return torch.optim.Adam(groups, betas=(args.momentum, args.beta), weight_decay=args.weight_decay,
                            fused=device_type in FUSED_ADAM_DEVICES)


class TrainingState:
    """Counters that survive a resume.

    ``epoch`` counts finished epochs; ``step_in_epoch`` the batches taken in the next one (0 at an
    epoch boundary, more after a stop request) and ``epoch_losses`` their losses.
    """

    def __init__(self):
        self.epoch = 0
        self.n_iter = 0
        self.best_error = None
        self.skipped_steps = 0
        self.step_in_epoch = 0
        self.epoch_losses = []

    def as_dict(self):
        return {'epoch': self.epoch, 'n_iter': self.n_iter, 'best_error': self.best_error,
                'skipped_steps': self.skipped_steps, 'step_in_epoch': self.step_in_epoch,
                'epoch_losses': list(self.epoch_losses)}


def save_run(run_dir, nets, optimizer, state, is_best=False, keep_copy=False, config=None):
    """Commit the network checkpoints and the training state as one crash-consistent set (:mod:`checkpoint_set`).

    Network files are ``{'epoch', 'state_dict', 'n_iter', 'model_config'}`` with ``epoch`` the number of
    finished epochs (the official ``epoch + 1``) and ``model_config`` the run's :class:`models.ModelConfig`
    as a dict (when ``config`` is given).  ``is_best`` also writes ``*_model_best.pth.tar``; ``keep_copy``
    keeps ``*_checkpoint_epNNN.pth.tar``.
    """
    objects = {STATE_FILE: {**state.as_dict(), 'optimizer': optimizer.state_dict()}}
    saved_config = {} if config is None else {models.CONFIG_KEY: config.as_dict()}
    for key, prefix in NETWORK_FILES.items():
        checkpoint = {'epoch': state.epoch, 'state_dict': unwrap(nets[key]).state_dict(), 'n_iter': state.n_iter,
                      **saved_config}
        names = [f'{prefix}_checkpoint.pth.tar']
        if is_best:
            names.append(f'{prefix}_model_best.pth.tar')
        if keep_copy:
            names.append(f'{prefix}_checkpoint_ep{state.epoch:03d}.pth.tar')
        objects.update(dict.fromkeys(names, checkpoint))
    save_set(run_dir, objects, state.epoch, state.n_iter)


def load_optimizer_state(optimizer, state_dict):
    """Load an optimiser state but keep the update kernel (fused / foreach) chosen for this device.

    ``Optimizer.load_state_dict`` would otherwise take the kernel flags of the run that saved it,
    e.g. a fused kernel the resuming device does not have.
    """
    kernels = [{key: group[key] for key in ('fused', 'foreach') if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state_dict)
    for group, kernel in zip(optimizer.param_groups, kernels):
        group.update(kernel)


def resume_run(run_dir, nets, optimizer, state, device, config=None):
    """Restore networks, optimiser and counters from the committed checkpoint set of ``run_dir``.

    A saved :class:`models.ModelConfig` that differs from ``config`` (the resuming command line's) gets a
    one-line warning per setting; the run continues with ``config``.

    Raises:
        CheckpointError: a file is missing or unreadable, or does not carry the epoch and iteration
            of the set (files of different saves are never mixed).
    """
    manifest = recover(run_dir)
    state_path = os.path.join(run_dir, STATE_FILE)
    saved = load_file(state_path, device)
    if manifest is None:  # a run saved before checkpoint sets: the networks must carry the state's epoch
        manifest = {'epoch': saved.get('epoch'), 'n_iter': None}
    else:
        check_member(state_path, saved, manifest)
    for key, prefix in NETWORK_FILES.items():
        path = os.path.join(run_dir, f'{prefix}_checkpoint.pth.tar')
        checkpoint = load_network_weights(unwrap(nets[key]), path, device)
        check_member(path, checkpoint, manifest)
        if key == 'disp' and config is not None:
            _, warnings = models.resolve_config(models.saved_config(checkpoint, path), config.as_dict(), path)
            for line in warnings:
                print(line, file=sys.stderr)
    load_optimizer_state(optimizer, saved['optimizer'])
    for name, default in state.as_dict().items():
        setattr(state, name, saved.get(name, default))


def record_arguments(run_dir, args, state):
    """Write ``args.json`` for a new run; a resume appends its arguments to ``args_resume.json`` instead,
    so the run's original configuration is never overwritten."""
    arguments = vars(args)
    if not args.resume:
        path, content = os.path.join(run_dir, 'args.json'), arguments
    else:
        path = os.path.join(run_dir, RESUME_ARGS_FILE)
        history = []
        if os.path.isfile(path):
            with open(path) as f:
                history = json.load(f)
        content = history + [{'resumed_at_epoch': state.epoch, 'resumed_at_iteration': state.n_iter,
                              'time': datetime.datetime.now().isoformat(timespec='seconds'), 'args': arguments}]
    with atomic_open(path) as handle:
        handle.write((json.dumps(content, indent=2) + '\n').encode())


def to_device(batch, device):
    """Move a SequenceFolder batch to ``device``: ``(tgt, refs, K, tgt_insts, ref_insts)``."""
    tgt_img, ref_imgs, intrinsics, _, tgt_insts, ref_insts = batch
    move = lambda t: t.to(device, non_blocking=True).float()  # noqa: E731
    return move(tgt_img), [move(r) for r in ref_imgs], move(intrinsics), [move(t) for t in tgt_insts], \
        [move(r) for r in ref_insts]


class Logs:
    """CSV files and TensorBoard writer of a run (only the main process writes)."""

    def __init__(self, run_dir, args, enabled):
        self.enabled = enabled
        self.run_dir = run_dir
        self.summary_path = os.path.join(run_dir, args.log_summary)
        self.full_path = os.path.join(run_dir, args.log_full)
        self.writer = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        for path, header in ((self.summary_path, SUMMARY_HEADER), (self.full_path, FULL_HEADER)):
            if not os.path.exists(path):
                self._append(path, header)
        self.writer = SummaryWriter(run_dir)

    @staticmethod
    def _append(path, row):
        with open(path, 'a', newline='') as f:
            csv.writer(f, delimiter='\t').writerow(row)

    def drop_rows_after(self, state):
        """Remove the CSV rows logged after the checkpoint being resumed (a crash may leave some: they
        would otherwise appear twice)."""
        if self.enabled:
            keep_tsv_rows(self.summary_path, SUMMARY_HEADER, lambda epoch: epoch <= state.epoch)
            keep_tsv_rows(self.full_path, FULL_HEADER, lambda iteration: iteration < state.n_iter)

    def iteration(self, n_iter, terms, total):
        if not self.enabled:
            return
        values = [terms[name].item() for name in LOSS_NAMES]
        self._append(self.full_path, [n_iter] + values + [total])
        for name, value in zip(LOSS_NAMES, values):
            self.writer.add_scalar(f'train/{name}', value, n_iter)
        self.writer.add_scalar('train/total_loss', total, n_iter)

    def scalar(self, tag, value, step):
        if self.enabled:
            self.writer.add_scalar(tag, value, step)

    def images(self, outputs, n_iter):
        if self.enabled:
            for tag, image in tensorboard_images(outputs).items():
                self.writer.add_image(f'train/{tag}', image, n_iter)

    def epoch(self, epoch, train_loss, errors):
        if not self.enabled:
            return
        decisive = next(iter(errors.values())) if errors else float('nan')
        self._append(self.summary_path, [epoch, train_loss, decisive])
        self.writer.add_scalar('train/epoch_loss', train_loss, epoch)
        for name, value in errors.items():
            self.writer.add_scalar(f'val/{name}', value, epoch)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def keep_tsv_rows(path, header, keep):
    """Rewrite the TSV log ``path`` with its complete rows whose first column (an int) ``keep`` accepts.

    A file with another header (a run logged before the epoch/iteration column) is left alone.
    """
    if not os.path.isfile(path):
        return
    with open(path, newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    if not rows or rows[0] != header:
        return
    kept = [row for row in rows[1:] if len(row) == len(header) and row[0].isdigit() and keep(int(row[0]))]
    text = io.StringIO()
    csv.writer(text, delimiter='\t').writerows([header] + kept)
    with atomic_open(path) as handle:
        handle.write(text.getvalue().encode())


def train_one_epoch(args, model, optimizer, loader, device, state, logs, dist_ctx, run_dir, stop=None, scaler=None):
    """Optimise over the batches of ``loader`` (the rest of the epoch when it was resumed mid-way).

    ``model`` is a :class:`models.InstaDM` (in DistributedDataParallel under torchrun); ``scaler`` the
    gradient scaler of ``--amp fp16`` (None or disabled otherwise).  ``state.step_in_epoch`` and
    ``state.epoch_losses`` follow the steps.  A ``stop`` request (see :mod:`preemption`) ends the epoch
    after the current step.  Returns the mean total loss of the epoch's steps, or ``None`` when a stop
    request ended it early.
    """
    model.train()
    scaler = scaler or precision.make_grad_scaler('off', device)
    end = time.time()
    progress = tqdm(total=state.step_in_epoch + len(loader), initial=state.step_in_epoch,
                    desc=f'epoch {state.epoch + 1}', leave=False, disable=not dist_ctx.is_main, dynamic_ncols=True)
    for i, batch in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)   # before the forward pass: the old gradients are not kept alive
        outputs = model(*to_device(batch, device))
        if state.step_in_epoch < args.debug_viz and dist_ctx.is_main:
            save_breakpoint_figures(outputs, os.path.join(run_dir, 'debug_viz'), state.step_in_epoch)
        # every process runs the backward pass (DistributedDataParallel's all-reduce needs all of them);
        # a step whose loss is not finite on some process is then dropped everywhere
        scaler.scale(outputs.total).backward()
        if not dist_ctx.all_finite(outputs.total):
            optimizer.zero_grad(set_to_none=True)
            state.skipped_steps += 1
            logs.scalar('train/skipped_steps', state.skipped_steps, state.n_iter)
            tqdm.write(f"warning: non-finite loss at iteration {state.n_iter}; step skipped "
                       f"({state.skipped_steps} skipped so far)")
        else:
            scaler.step(optimizer)
            scaler.update()
            total = outputs.total.item()
            state.epoch_losses.append(total)
            logs.iteration(state.n_iter, outputs.losses, total)
            if args.image_freq and state.n_iter % args.image_freq == 0:
                logs.images(outputs, state.n_iter)
            if args.print_freq and state.n_iter % args.print_freq == 0:
                tqdm.write(f"iteration {state.n_iter}: total {total:.4f} | " +
                           ' '.join(f'{name} {value.item():.4f}' for name, value in outputs.losses.items()))
        state.n_iter += 1
        state.step_in_epoch += 1
        seconds = time.time() - end
        end = time.time()
        progress.set_postfix(loss=f'{state.epoch_losses[-1]:.4f}' if state.epoch_losses else 'nan',
                             s_per_iter=f'{seconds:.2f}')
        progress.update(1)
        if stop is not None and i + 1 < len(loader) and dist_ctx.any_true(stop.requested):
            progress.close()
            return None
    progress.close()
    return float(np.mean(state.epoch_losses)) if state.epoch_losses else float('nan')


@torch.no_grad()
def validate_with_gt(disp_net, loader, device):
    """Depth metrics on all, foreground and background pixels: ``{'abs_rel': .., 'fg/abs_rel': .., ...}``."""
    disp_net.eval()
    sums, counts = {}, {}
    for img, depth, fg_mask in tqdm(loader, desc='validation', leave=False, dynamic_ncols=True):
        pred = models.depth_from_disparity(disp_net(img.to(device).float()))
        if pred.shape[-2:] != depth.shape[-2:]:
            pred = F.interpolate(pred, size=depth.shape[-2:], mode='bilinear', align_corners=False)
        for gt_i, pred_i, fg_i in zip(depth, pred[:, 0].cpu(), fg_mask):
            for part, errors in compute_errors_split(gt_i, pred_i, fg_i).items():
                if errors is None:
                    continue
                prefix = '' if part == 'all' else f'{part}/'
                for name, value in zip(METRIC_NAMES, errors):
                    sums[prefix + name] = sums.get(prefix + name, 0.0) + value
                    counts[prefix + name] = counts.get(prefix + name, 0) + 1
    ordered = ['abs_rel'] + [n for n in sums if n != 'abs_rel']
    return {name: sums[name] / counts[name] for name in ordered}


@torch.no_grad()
def validate_without_gt(model, loader, device):
    """Photometric (first, the model-selection error), geometry, smoothness and weighted total losses.

    ``model``: the :class:`models.InstaDM` of the run (its loss options weight the total).
    """
    model.eval()
    options = model.options
    totals = {'photo_loss': [], 'geometry_loss': [], 'smooth_loss': [], 'total_loss': []}
    for batch in tqdm(loader, desc='validation', leave=False, dynamic_ncols=True):
        terms = model(*to_device(batch, device)).losses
        photo, geometry, smooth = terms['photo'].item(), terms['geometry'].item(), terms['smooth'].item()
        totals['photo_loss'].append(photo)
        totals['geometry_loss'].append(geometry)
        totals['smooth_loss'].append(smooth)
        totals['total_loss'].append(options.photo * photo + options.geometry * geometry + options.smooth * smooth)
    return {name: float(np.mean(values)) for name, values in totals.items()}


def build_model(args, nets, device, dist_ctx):
    """The run's :class:`models.InstaDM`: networks prepared for ``--channels-last`` / ``--compile`` /
    ``--sync-bn``, wrapped in DistributedDataParallel under torchrun (the module to train)."""
    if args.sync_bn and dist_ctx.enabled:
        nets.update({key: torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) for key, net in nets.items()})
    precision.prepare_networks(nets, channels_last=args.channels_last, compile_networks=args.compile)
    insta_dm = models.InstaDM(nets['disp'], nets['ego'], nets['obj'], LossOptions.from_args(args),
                              precision.NetworkPrecision.from_flags(args.amp, args.channels_last, device))
    return dist_ctx.wrap(insta_dm, device)


class RunError(Exception):
    """A one-line problem of the requested run (e.g. nothing left to train)."""


class TrainingStopped(Exception):
    """A stop request ended training after a consistent save; ``exit_code`` is the process's exit code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def train(args, device, dist_ctx, run_dir):
    """Build everything, train from the start or the resumed checkpoint, and save after every epoch.

    Raises:
        TrainingStopped: SIGTERM / SIGUSR1 / Ctrl-C ended training after a consistent save.
    """
    torch.manual_seed(args.seed)
    train_loader, val_loader = make_loaders(args, dist_ctx)
    config = model_config(args, read_image_size(train_loader.dataset.scenes[0].frames[0]))
    nets = build_networks(args, device, config)
    optimizer = build_optimizer(args, nets)
    state = TrainingState()
    if args.resume:
        resume_run(run_dir, nets, optimizer, state, device, config)
        if state.epoch >= args.epochs:
            raise RunError(f"--epochs {args.epochs}: {run_dir} has already trained {state.epoch} epochs; "
                           f"give a larger --epochs to continue")
        print(f"=> resumed {run_dir} at epoch {state.epoch}, iteration {state.n_iter}")
    if dist_ctx.is_main:
        os.makedirs(run_dir, exist_ok=True)
        record_arguments(run_dir, args, state)
        print(f"=> saving to {run_dir} | device {device} | processes {dist_ctx.world_size}")
    print(f"=> {len(train_loader.dataset)} training samples, {len(val_loader.dataset)} validation samples")
    if device.type == 'cuda' and torch.cuda.device_count() > 1 and not dist_ctx.enabled:
        nets = {key: torch.nn.DataParallel(net) for key, net in nets.items()}
    model = build_model(args, nets, device, dist_ctx)
    if args.amp != 'off' or args.channels_last or args.compile:
        print(f"=> networks: amp {args.amp}, channels-last {args.channels_last}, compile {args.compile}"
              + (f" | {precision.cpu_capability()}" if device.type == 'cpu' else ''))
    logs = Logs(run_dir, args, dist_ctx.is_main)
    try:
        if args.resume:
            logs.drop_rows_after(state)
        with StopRequest() as stop:
            train_epochs(args, nets, model, optimizer, precision.make_grad_scaler(args.amp, device), train_loader,
                         val_loader, device, state, logs, dist_ctx, run_dir, stop, config)
    finally:
        logs.close()


def train_epochs(args, nets, model, optimizer, scaler, train_loader, val_loader, device, state, logs, dist_ctx,
                 run_dir, stop, config=None):
    """The epoch loop: train, validate, log, save; a stop request saves and raises :class:`TrainingStopped`.

    ``nets``: the three networks (what is saved); ``model``: the :class:`models.InstaDM` holding them
    (in DistributedDataParallel under torchrun), what is trained; ``config``: the run's
    :class:`models.ModelConfig`, saved with the networks.
    """
    for _ in tqdm(range(state.epoch, args.epochs), desc='epochs', disable=not dist_ctx.is_main,
                  initial=state.epoch, total=args.epochs, dynamic_ncols=True):
        start_epoch(train_loader, state)
        try:
            train_loss = train_one_epoch(args, model, optimizer, train_loader, device, state, logs, dist_ctx,
                                         run_dir, stop, scaler)
        except RuntimeError as error:  # the stop signal also ended the loader's workers, between two steps
            if not workers_stopped_by(error, stop):
                raise
            train_loss = None
        if train_loss is not None:
            state.epoch, state.step_in_epoch, state.epoch_losses = state.epoch + 1, 0, []
            if dist_ctx.is_main:
                errors = (validate_with_gt(unwrap(nets['disp']), val_loader, device) if args.with_gt
                          else validate_without_gt(unwrap(model), val_loader, device))
                decisive = next(iter(errors.values()))
                is_best = state.best_error is None or (math.isfinite(decisive) and decisive < state.best_error)
                if is_best:
                    state.best_error = decisive
                logs.epoch(state.epoch, train_loss, errors)
                save_run(run_dir, nets, optimizer, state, is_best=is_best,
                         keep_copy=args.save_freq > 0 and state.epoch % args.save_freq == 0, config=config)
                tqdm.write(f"epoch {state.epoch}: train loss {train_loss:.4f} | " +
                           ', '.join(f'{k} {v:.4f}' for k, v in errors.items() if '/' not in k))
        elif dist_ctx.is_main:
            save_run(run_dir, nets, optimizer, state, config=config)
        dist_ctx.barrier()
        if train_loss is None or (state.epoch < args.epochs and dist_ctx.any_true(stop.requested)):
            raise TrainingStopped(f"stopped by {stop.name} at epoch {state.epoch}, iteration {state.n_iter}: "
                                  f"checkpoint saved; continue with the same command plus --resume {run_dir}",
                                  stop.exit_code)


def main(argv=None):
    """Train; bad input, unwritable outputs and unusable checkpoints end in one line ``error: ...`` (exit 1)."""
    args = build_parser().parse_args(argv)
    try:
        device = select_device(args.device, int(os.environ.get('LOCAL_RANK', '0')))
        run_dir = make_run_folder(args)
    except (ValueError, OutputError) as error:
        raise SystemExit(f"error: {error}") from None
    dist_ctx = Distributed(device.type)
    try:
        train(args, device, dist_ctx, run_dir)
    except (DatasetError, CheckpointError, OutputError, FileNotFoundError, RunError, TrainingStopped,
            precision.CompileUnavailable, KeyboardInterrupt) as error:
        if not args.resume and dist_ctx.is_main and read_manifest(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        dist_ctx.close()
        if isinstance(error, TrainingStopped):
            print(error, file=sys.stderr)
            sys.exit(error.exit_code)
        if isinstance(error, KeyboardInterrupt):
            print(f"\ninterrupted: the last saved checkpoint of {run_dir} is intact", file=sys.stderr)
            sys.exit(130)
        raise SystemExit(f"error: {one_line(error)}") from None
    dist_ctx.close()
    if dist_ctx.is_main:
        print(f"=> done: checkpoints in {run_dir}; tensorboard --logdir {os.path.dirname(run_dir)}")
    return run_dir


if __name__ == '__main__':
    main()
