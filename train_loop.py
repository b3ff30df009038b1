"""The training loop: epochs, steps, the two validations, saving after every epoch, stopping on request."""
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import models
import precision
from datasets.io import read_image_size
from kitti_eval.depth_metrics import METRIC_NAMES, compute_errors_split
from loss_terms import LOSS_TERMS, VALIDATION_TERMS, weighted_total
from preemption import StopRequest, workers_stopped_by
from projection import unwrap
from train_checkpoints import TrainingState, record_arguments, resume_run, save_run
from train_data import make_loaders, start_epoch, to_device
from train_logs import Logs
from train_model import build_model, build_networks, build_optimizer, model_config
from visualization import save_breakpoint_figures


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
    columns = {term.name: term.csv_column for term in LOSS_TERMS if term.name in VALIDATION_TERMS}
    totals = {column: [] for column in columns.values()}
    totals['total_loss'] = []
    for batch in tqdm(loader, desc='validation', leave=False, dynamic_ncols=True):
        losses = model(*to_device(batch, device)).losses
        terms = {name: losses[name].item() for name in columns}
        for name, column in columns.items():
            totals[column].append(terms[name])
        totals['total_loss'].append(weighted_total(terms, model.options.weights, VALIDATION_TERMS))
    return {name: float(np.mean(values)) for name, values in totals.items()}


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
    if not len(train_loader.dataset):
        raise RunError(f"--begin-idx {args.begin_idx}: no training sample is left (the training set holds at most "
                       f"{args.begin_idx})" if args.begin_idx else f"{args.data}: no training sample")
    config = model_config(args, read_image_size(train_loader.dataset.scenes[0].frames[0]))
    nets = build_networks(args, device, config)
    optimizer = build_optimizer(args, nets)
    state = TrainingState()
    scaler = precision.make_grad_scaler(args.amp, device)
    if args.resume:
        resume_run(run_dir, nets, optimizer, state, device, config, scaler)
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
            train_epochs(args, nets, model, optimizer, scaler, train_loader,
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
                         keep_copy=args.save_freq > 0 and state.epoch % args.save_freq == 0, config=config,
                         scaler=scaler)
                tqdm.write(f"epoch {state.epoch}: train loss {train_loss:.4f} | " +
                           ', '.join(f'{k} {v:.4f}' for k, v in errors.items() if '/' not in k))
        elif dist_ctx.is_main:
            save_run(run_dir, nets, optimizer, state, config=config, scaler=scaler)
        dist_ctx.barrier()
        if train_loss is None or (state.epoch < args.epochs and dist_ctx.any_true(stop.requested)):
            raise TrainingStopped(f"stopped by {stop.name} at epoch {state.epoch}, iteration {state.n_iter}: "
                                  f"checkpoint saved; continue with the same command plus --resume {run_dir}",
                                  stop.exit_code)
