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
import json
import math
import os
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
from checkpoint_io import CheckpointError, atomic_torch_save, load_file, load_network_weights, save_checkpoint
from datasets.custom_transforms import train_transform, valid_transform
from datasets.io import DatasetError
from datasets.sequence_folders import SequenceFolder
from datasets.validation_folders import ValidationSet
from devices import select_device
from kitti_eval.depth_metrics import METRIC_NAMES, compute_errors_split
from projection import LOSS_NAMES, LossOptions, unwrap
from visualization import save_breakpoint_figures, tensorboard_images

NETWORK_FILES = {'disp': 'dispnet', 'ego': 'ego_pose', 'obj': 'obj_pose'}
STATE_FILE = 'training_state.pth.tar'
FUSED_ADAM_DEVICES = ('cpu', 'cuda')
CSV_LOSS_NAMES = ('photo_loss', 'geometry_loss', 'smooth_loss', 'scale_loss', 'mof_consistency_loss',
                  'height_loss', 'depth_loss')


def build_parser():
    parser = argparse.ArgumentParser(
        description='Learning Monocular Depth in Dynamic Scenes via Instance-Aware Projection Consistency',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('data', metavar='DIR', help='path to the KITTI-VIS / Cityscapes-VIS dataset')
    parser.add_argument('--with-gt', action='store_true', help='validate with ground-truth depth (.npy beside val frames)')
    parser.add_argument('--sequence-length', type=int, default=3, metavar='N', help='frames per training sample')
    parser.add_argument('-mni', '--mni', type=int, default=20, help='maximum number of instances per frame (0 = rigid model)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default='euler', help='rotation parameterisation')
    parser.add_argument('--padding-mode', choices=['zeros', 'border'], default='zeros', help='padding of the warps')
    parser.add_argument('-j', '--workers', type=int, default=8, metavar='N', help='data loading workers')
    parser.add_argument('-b', '--batch-size', type=int, default=4, metavar='N', help='mini-batch size (per process)')
    parser.add_argument('--epochs', type=int, default=200, metavar='N', help='number of epochs')
    parser.add_argument('--epoch-size', type=int, default=0, metavar='N', help='iterations per epoch (0 = whole dataset)')
    parser.add_argument('--disp-lr', '--disp-learning-rate', type=float, default=1e-4, metavar='LR', help='DispResNet learning rate')
    parser.add_argument('--ego-lr', '--ego-learning-rate', type=float, default=1e-4, metavar='LR', help='EgoPoseNet learning rate')
    parser.add_argument('--obj-lr', '--obj-learning-rate', type=float, default=1e-4, metavar='LR', help='ObjPoseNet learning rate')
    parser.add_argument('--momentum', type=float, default=0.9, metavar='M', help='Adam beta1')
    parser.add_argument('--beta', type=float, default=0.999, metavar='M', help='Adam beta2')
    parser.add_argument('--weight-decay', '--wd', type=float, default=0, metavar='W', help='weight decay')
    parser.add_argument('--print-freq', type=int, default=10, metavar='N', help='iterations between printed loss lines')
    parser.add_argument('--save-freq', type=int, default=3, metavar='N', help='epochs between kept checkpoint copies')
    parser.add_argument('--image-freq', type=int, default=250, metavar='N', help='iterations between TensorBoard images')
    parser.add_argument('--resnet-layers', type=int, default=18, choices=[18, 50], help='ResNet depth of DispResNet')
    parser.add_argument('--with-pretrain', type=int, default=1, help='ImageNet initialisation (1) or random (0)')
    parser.add_argument('--imagenet-weights', default=None, metavar='DIR',
                        help='folder with torchvision ResNet weights (default: the torch hub cache)')
    parser.add_argument('--pretrained-disp', default=None, metavar='PATH', help='DispResNet checkpoint to start from')
    parser.add_argument('--pretrained-ego-pose', default=None, metavar='PATH', help='EgoPoseNet checkpoint to start from')
    parser.add_argument('--pretrained-obj-pose', default=None, metavar='PATH', help='ObjPoseNet checkpoint to start from')
    parser.add_argument('--seed', type=int, default=0, help='seed of data order, augmentation and initialisation')
    parser.add_argument('--log-summary', default='progress_log_summary.csv', metavar='PATH', help='per-epoch CSV')
    parser.add_argument('--log-full', default='progress_log_full.csv', metavar='PATH', help='per-iteration CSV')
    parser.add_argument('-p', '--photo-loss-weight', type=float, default=2.0, metavar='W')
    parser.add_argument('-c', '--geometry-consistency-weight', type=float, default=1.0, metavar='W')
    parser.add_argument('-s', '--smooth-loss-weight', type=float, default=0.1, metavar='W')
    parser.add_argument('-o', '--scale-loss-weight', type=float, default=0.02, metavar='W', help='object size loss weight')
    parser.add_argument('-mc', '--mof-consistency-loss-weight', type=float, default=0.1, metavar='W')
    parser.add_argument('-hp', '--height-loss-weight', type=float, default=0.0, metavar='W', help='height prior weight')
    parser.add_argument('-dm', '--depth-loss-weight', type=float, default=0.0, metavar='W', help='mean disparity weight')
    parser.add_argument('--with-auto-mask', action='store_true', help='mask stationary pixels')
    parser.add_argument('--with-ssim', action='store_true', help='add SSIM to the photometric loss')
    parser.add_argument('--with-mask', action='store_true', help='weight the photometric loss by 1 - geometry error')
    parser.add_argument('--with-only-obj', action='store_true', help='photometric/geometry losses on instance pixels only')
    parser.add_argument('--name', required=True, help='experiment name: outputs in checkpoints/NAME/TIMESTAMP')
    parser.add_argument('--debug-mode', action='store_true', help='a few iterations per epoch, outputs in checkpoints/debug')
    parser.add_argument('--no-shuffle', action='store_true', help='keep the sample order')
    parser.add_argument('--no-input-aug', action='store_true', help='no flip / scale-crop augmentation')
    parser.add_argument('--begin-idx', type=int, default=None, help='skip the training samples before this index')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='where to train')
    parser.add_argument('--resume', default=None, metavar='DIR', help='run folder to continue (networks, optimiser, counters)')
    parser.add_argument('--debug-viz', type=int, default=0, metavar='N',
                        help='save the BREAKPOINT-1/2 figures of the first N batches to RUN/debug_viz')
    parser.add_argument('--no-cache', action='store_true', help='recompute the instance association every time')
    parser.add_argument('--checkpoint-root', default='checkpoints', metavar='DIR',
                        help='outputs go to DIR/NAME/TIMESTAMP')
    parser.add_argument('--amp', choices=sorted(precision.AMP_DTYPES), default='off',
                        help='mixed precision of the networks (geometry and losses stay float32); bf16 on CPU and '
                             'GPU, fp16 on GPU with gradient scaling')
    parser.add_argument('--channels-last', action='store_true', help='channels-last memory layout for the networks')
    parser.add_argument('--compile', action='store_true', help='torch.compile the three networks')
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
        without instances.  Buffers (BatchNorm statistics) are broadcast from rank 0 at every forward.
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

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled:
            dist.destroy_process_group()


def make_run_folder(args):
    """A new ``ROOT/NAME/TIMESTAMP`` (``ROOT/debug/...`` in debug mode), or the resumed folder.

    Never an existing folder: a second run started in the same second gets ``TIMESTAMP-2``.
    """
    if args.resume:
        if not os.path.isfile(os.path.join(args.resume, STATE_FILE)):
            raise SystemExit(f"error: {os.path.join(args.resume, STATE_FILE)}: not found; --resume takes a run folder")
        return args.resume
    timestamp = datetime.datetime.now().strftime('%m-%d-%H:%M:%S')
    run_dir = os.path.join(args.checkpoint_root, 'debug' if args.debug_mode else args.name, timestamp)
    candidate, suffix = run_dir, 1
    while os.path.exists(candidate):
        suffix += 1
        candidate = f'{run_dir}-{suffix}'
    return candidate


def make_loaders(args, dist_ctx):
    """Training and validation DataLoaders (a DistributedSampler under torchrun)."""
    transform = valid_transform() if args.no_input_aug else train_transform()
    train_set = SequenceFolder(args.data, train=True, seed=args.seed, shuffle=not args.no_shuffle,
                               max_num_instances=args.mni, sequence_length=args.sequence_length,
                               transform=transform, begin_idx=args.begin_idx, cache=not args.no_cache)
    if args.with_gt:
        val_set = ValidationSet(args.data, transform=valid_transform())
    else:
        val_set = SequenceFolder(args.data, train=False, seed=args.seed, shuffle=not args.no_shuffle,
                                 max_num_instances=args.mni, sequence_length=args.sequence_length,
                                 transform=valid_transform(), cache=not args.no_cache)
        val_set = torch.utils.data.Subset(val_set, range(max(1, len(val_set) // 10)))
    sampler = (torch.utils.data.DistributedSampler(train_set, shuffle=not args.debug_mode, seed=args.seed)
               if dist_ctx.enabled else None)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, shuffle=sampler is None and not args.debug_mode, sampler=sampler,
        num_workers=args.workers, pin_memory=torch.cuda.is_available(), drop_last=dist_ctx.enabled,
        persistent_workers=args.workers > 0)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, shuffle=False,
                                             num_workers=args.workers, pin_memory=torch.cuda.is_available())
    return train_loader, val_loader


def build_networks(args, device):
    """The three networks, ImageNet-initialised with ``--with-pretrain 1`` and loaded from ``--pretrained-*``."""
    def pretrained(layers):
        if not args.with_pretrain:
            return False
        if args.imagenet_weights:
            from models.resnet_encoder import RESNET_WEIGHTS
            return os.path.join(args.imagenet_weights, os.path.basename(RESNET_WEIGHTS[layers].url))
        return True

    nets = {'disp': models.DispResNet(args.resnet_layers, pretrained(args.resnet_layers)),
            'ego': models.EgoPoseNet(18, pretrained(18)),
            'obj': models.ObjPoseNet(18, pretrained(18))}
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
    """Counters that survive a resume."""

    def __init__(self):
        self.epoch = 0
        self.n_iter = 0
        self.best_error = None
        self.skipped_steps = 0

    def as_dict(self):
        return {'epoch': self.epoch, 'n_iter': self.n_iter, 'best_error': self.best_error,
                'skipped_steps': self.skipped_steps}


def save_run(run_dir, nets, optimizer, state, is_best=False, keep_copy=False):
    """Write the three network checkpoints and the training state atomically.

    ``state.epoch`` is the number of finished epochs (the official ``epoch + 1``).  ``is_best``
    also writes ``*_model_best.pth.tar``; ``keep_copy`` keeps ``*_checkpoint_epNNN.pth.tar``.
    """
    for key, prefix in NETWORK_FILES.items():
        state_dict = unwrap(nets[key]).state_dict()
        save_checkpoint(os.path.join(run_dir, f'{prefix}_checkpoint.pth.tar'), state_dict, state.epoch)
        if is_best:
            save_checkpoint(os.path.join(run_dir, f'{prefix}_model_best.pth.tar'), state_dict, state.epoch)
        if keep_copy:
            save_checkpoint(os.path.join(run_dir, f'{prefix}_checkpoint_ep{state.epoch:03d}.pth.tar'), state_dict, state.epoch)
    atomic_torch_save({**state.as_dict(), 'optimizer': optimizer.state_dict()}, os.path.join(run_dir, STATE_FILE))


def load_optimizer_state(optimizer, state_dict):
    """Load an optimiser state but keep the update kernel (fused / foreach) chosen for this device.

    ``Optimizer.load_state_dict`` would otherwise take the kernel flags of the run that saved it,
    e.g. a fused kernel the resuming device does not have.
    """
    kernels = [{key: group[key] for key in ('fused', 'foreach') if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state_dict)
    for group, kernel in zip(optimizer.param_groups, kernels):
        group.update(kernel)


def resume_run(run_dir, nets, optimizer, state, device):
    """Restore networks, optimiser and counters from a run folder written by :func:`save_run`."""
    for key, prefix in NETWORK_FILES.items():
        load_network_weights(unwrap(nets[key]), os.path.join(run_dir, f'{prefix}_checkpoint.pth.tar'), device)
    saved = load_file(os.path.join(run_dir, STATE_FILE), device)
    load_optimizer_state(optimizer, saved['optimizer'])
    for name in state.as_dict():
        setattr(state, name, saved[name])


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
        for path, header in ((self.summary_path, ['train_loss', 'validation_loss']),
                             (self.full_path, list(CSV_LOSS_NAMES) + ['train_loss'])):
            if not os.path.exists(path):
                self._append(path, header)
        self.writer = SummaryWriter(run_dir)

    @staticmethod
    def _append(path, row):
        with open(path, 'a', newline='') as f:
            csv.writer(f, delimiter='\t').writerow(row)

    def iteration(self, n_iter, terms, total):
        if not self.enabled:
            return
        values = [terms[name].item() for name in LOSS_NAMES]
        self._append(self.full_path, values + [total])
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
        self._append(self.summary_path, [train_loss, decisive])
        self.writer.add_scalar('train/epoch_loss', train_loss, epoch)
        for name, value in errors.items():
            self.writer.add_scalar(f'val/{name}', value, epoch)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def train_one_epoch(args, model, optimizer, loader, device, state, logs, dist_ctx, run_dir, scaler=None):
    """One epoch of optimisation; returns the mean total loss of the steps taken.

    ``model`` is a :class:`models.InstaDM` (in DistributedDataParallel under torchrun); ``scaler`` the
    gradient scaler of ``--amp fp16`` (None or disabled otherwise).
    """
    model.train()
    scaler = scaler or precision.make_grad_scaler('off', device)
    epoch_size = args.epoch_size or len(loader)
    if args.debug_mode:
        epoch_size = min(epoch_size, 6)
    losses, end = [], time.time()
    progress = tqdm(total=min(epoch_size, len(loader)), desc=f'epoch {state.epoch + 1}', leave=False,
                    disable=not dist_ctx.is_main, dynamic_ncols=True)
    for i, batch in enumerate(loader):
        if i >= epoch_size:
            break
        outputs = model(*to_device(batch, device))
        if i < args.debug_viz and dist_ctx.is_main:
            save_breakpoint_figures(outputs, os.path.join(run_dir, 'debug_viz'), i)
        optimizer.zero_grad(set_to_none=True)
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
            losses.append(total)
            logs.iteration(state.n_iter, outputs.losses, total)
            if args.image_freq and state.n_iter % args.image_freq == 0:
                logs.images(outputs, state.n_iter)
            if args.print_freq and state.n_iter % args.print_freq == 0:
                tqdm.write(f"iteration {state.n_iter}: total {total:.4f} | " +
                           ' '.join(f'{name} {value.item():.4f}' for name, value in outputs.losses.items()))
        state.n_iter += 1
        seconds = time.time() - end
        end = time.time()
        progress.set_postfix(loss=f'{losses[-1]:.4f}' if losses else 'nan', s_per_iter=f'{seconds:.2f}')
        progress.update(1)
    progress.close()
    return float(np.mean(losses)) if losses else float('nan')


@torch.no_grad()
def validate_with_gt(disp_net, loader, device):
    """Depth metrics on all, foreground and background pixels: ``{'abs_rel': .., 'fg/abs_rel': .., ...}``."""
    disp_net.eval()
    sums, counts = {}, {}
    for img, depth, fg_mask in tqdm(loader, desc='validation', leave=False, dynamic_ncols=True):
        pred = 1 / disp_net(img.to(device).float())
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
    ``--sync-bn``, wrapped in DistributedDataParallel under torchrun.  Returns ``(model, insta_dm)``:
    the module to train and the plain InstaDM inside it."""
    if args.sync_bn and dist_ctx.enabled:
        nets.update({key: torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) for key, net in nets.items()})
    precision.prepare_networks(nets, channels_last=args.channels_last, compile_networks=args.compile)
    insta_dm = models.InstaDM(nets['disp'], nets['ego'], nets['obj'], LossOptions.from_args(args),
                              precision.NetworkPrecision.from_flags(args.amp, args.channels_last, device))
    return dist_ctx.wrap(insta_dm, device), insta_dm


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = select_device(args.device, int(os.environ.get('LOCAL_RANK', '0')))
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    dist_ctx = Distributed(device.type)
    torch.manual_seed(args.seed)
    run_dir = make_run_folder(args)
    try:
        train_loader, val_loader = make_loaders(args, dist_ctx)
        nets = build_networks(args, device)
    except (DatasetError, CheckpointError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}")
    if dist_ctx.is_main:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, 'args.json'), 'w') as f:
            json.dump(vars(args), f, indent=2)
        print(f"=> saving to {run_dir} | device {device} | processes {dist_ctx.world_size}")
    print(f"=> {len(train_loader.dataset)} training samples, {len(val_loader.dataset)} validation samples")
    optimizer = build_optimizer(args, nets)
    state = TrainingState()
    if args.resume:
        try:
            resume_run(run_dir, nets, optimizer, state, device)
        except CheckpointError as error:
            raise SystemExit(f"error: {error}")
        print(f"=> resumed {run_dir} at epoch {state.epoch}, iteration {state.n_iter}")
    if device.type == 'cuda' and torch.cuda.device_count() > 1 and not dist_ctx.enabled:
        nets = {key: torch.nn.DataParallel(net) for key, net in nets.items()}
    try:
        model, insta_dm = build_model(args, nets, device, dist_ctx)
    except RuntimeError as error:
        raise SystemExit(f"error: {error}")
    scaler = precision.make_grad_scaler(args.amp, device)
    if args.amp != 'off' or args.channels_last or args.compile:
        print(f"=> networks: amp {args.amp}, channels-last {args.channels_last}, compile {args.compile}"
              + (f" | {precision.cpu_capability()}" if device.type == 'cpu' else ''))
    logs = Logs(run_dir, args, dist_ctx.is_main)
    try:
        for epoch in tqdm(range(state.epoch, args.epochs), desc='epochs', disable=not dist_ctx.is_main,
                          initial=state.epoch, total=args.epochs, dynamic_ncols=True):
            if isinstance(train_loader.sampler, torch.utils.data.DistributedSampler):
                train_loader.sampler.set_epoch(epoch)
            train_loss = train_one_epoch(args, model, optimizer, train_loader, device, state, logs,
                                         dist_ctx, run_dir, scaler)
            state.epoch = epoch + 1
            if dist_ctx.is_main:
                errors = (validate_with_gt(unwrap(nets['disp']), val_loader, device) if args.with_gt
                          else validate_without_gt(insta_dm, val_loader, device))
                decisive = next(iter(errors.values()))
                is_best = state.best_error is None or (math.isfinite(decisive) and decisive < state.best_error)
                if is_best:
                    state.best_error = decisive
                logs.epoch(state.epoch, train_loss, errors)
                save_run(run_dir, nets, optimizer, state, is_best=is_best,
                         keep_copy=args.save_freq > 0 and state.epoch % args.save_freq == 0)
                tqdm.write(f"epoch {state.epoch}: train loss {train_loss:.4f} | " +
                           ', '.join(f'{k} {v:.4f}' for k, v in errors.items() if '/' not in k))
            dist_ctx.barrier()
    except DatasetError as error:
        logs.close()
        dist_ctx.close()
        raise SystemExit(f"error: {error}")
    except KeyboardInterrupt:
        if dist_ctx.is_main:
            save_run(run_dir, nets, optimizer, state)
            print(f"\ninterrupted: checkpoint saved; continue with --resume {run_dir}")
        logs.close()
        dist_ctx.close()
        sys.exit(130)
    logs.close()
    dist_ctx.close()
    if dist_ctx.is_main:
        print(f"=> done: checkpoints in {run_dir}; tensorboard --logdir {os.path.dirname(run_dir)}")
    return run_dir


if __name__ == '__main__':
    main()
