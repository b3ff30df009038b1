"""The run folder of a training run: its name, saved arguments, crash-consistent checkpoint sets, resuming."""
import datetime
import json
import os
import sys

import models
from checkpoint_io import CheckpointError, load_file, load_network_weights
from checkpoint_set import check_member, recover, save_set
from fileio import atomic_open, check_writable_folder, new_run_folder
from projection import unwrap


NETWORK_FILES = {'disp': 'dispnet', 'ego': 'ego_pose', 'obj': 'obj_pose'}
STATE_FILE = 'training_state.pth.tar'
RESUME_ARGS_FILE = 'args_resume.json'
GRAD_SCALER_KEY = 'grad_scaler'   # in the training state of an --amp fp16 run


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


def save_run(run_dir, nets, optimizer, state, is_best=False, keep_copy=False, config=None, scaler=None):
    """Commit the network checkpoints and the training state as one crash-consistent set (:mod:`checkpoint_set`).

    Network files are ``{'epoch', 'state_dict', 'n_iter', 'model_config'}`` with ``epoch`` the number of
    finished epochs (the official ``epoch + 1``) and ``model_config`` the run's :class:`models.ModelConfig`
    as a dict (when ``config`` is given).  ``is_best`` also writes ``*_model_best.pth.tar``; ``keep_copy``
    keeps ``*_checkpoint_epNNN.pth.tar``.
    """
    objects = {STATE_FILE: {**state.as_dict(), 'optimizer': optimizer.state_dict()}}
    if scaler is not None and scaler.is_enabled():   # --amp fp16: the loss scale and its growth tracker
        objects[STATE_FILE][GRAD_SCALER_KEY] = scaler.state_dict()
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


def resume_run(run_dir, nets, optimizer, state, device, config=None, scaler=None):
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
    if scaler is not None and scaler.is_enabled() and GRAD_SCALER_KEY in saved:
        scaler.load_state_dict(saved[GRAD_SCALER_KEY])
    for name, default in state.as_dict().items():
        setattr(state, name, saved.get(name, default))


def read_resume_history(path):
    """The list of earlier resumes in ``args_resume.json`` (``[]`` without the file); a damaged file is a one-line
    CheckpointError, and is left as it is."""
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as f:
            history = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not readable JSON ({type(error).__name__}: {error}); repair it or move it "
                              "aside to resume") from None
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: not a list of resumes (a {type(history).__name__}); repair it or move it "
                              "aside to resume")
    return history


def record_arguments(run_dir, args, state):
    """Write ``args.json`` for a new run; a resume appends its arguments to ``args_resume.json`` instead,
    so the run's original configuration is never overwritten."""
    arguments = vars(args)
    if not args.resume:
        path, content = os.path.join(run_dir, 'args.json'), arguments
    else:
        path = os.path.join(run_dir, RESUME_ARGS_FILE)
        history = read_resume_history(path)
        content = history + [{'resumed_at_epoch': state.epoch, 'resumed_at_iteration': state.n_iter,
                              'time': datetime.datetime.now().isoformat(timespec='seconds'), 'args': arguments}]
    with atomic_open(path) as handle:
        handle.write((json.dumps(content, indent=2) + '\n').encode())
