"""Checkpoint files: atomic saving and safe, strict loading.

A checkpoint is ``torch.save({'epoch': int, 'state_dict': {...}, ...})`` as in the official
release; a bare state dict is accepted too.  Files are read with ``weights_only=True``, so a
checkpoint can never run code.
"""
import os
import zipfile

import torch

from fileio import atomic_open


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit the network (one-line message)."""


class _RecordingWriter:
    """A file handle that remembers the OSError of a failed write.

    ``torch.save`` turns a failed write into ``RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos``; the recorded error lets the caller say what happened (e.g. a full disk).
    """

    def __init__(self, handle):
        self.handle = handle
        self.error = None

    def write(self, data):
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        self.handle.flush()


def atomic_torch_save(obj, path):
    """``torch.save`` through :func:`fileio.atomic_open`: an interrupted save never replaces a good file.

    Raises:
        fileio.OutputError: "``path``: no space left on device" when the disk is full.
    """
    with atomic_open(path) as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None


def save_checkpoint(path, state_dict, epoch, **extra):
    """Write ``{'epoch': epoch, 'state_dict': state_dict, **extra}`` atomically to ``path``."""
    atomic_torch_save({'epoch': epoch, 'state_dict': state_dict, **extra}, path)


def load_file(path, map_location='cpu', mmap=None):
    """``torch.load(path, weights_only=True)`` with one-line :class:`CheckpointError` messages (``mmap=True``:
    the tensors memory-mapped, read only when used; a file of the legacy, non-zip format, which cannot be
    mapped, is read whole; ``None``: torch's own default)."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if mmap and not zipfile.is_zipfile(path):
        mmap = False
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch.load raises many types on foreign or damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_load_failure(path, exc)})") from None


def load_checkpoint(path, map_location='cpu'):
    """Read a checkpoint and return it as a dict with a ``'state_dict'`` entry.

    A bare state dict (every value a tensor) is wrapped as ``{'state_dict': ...}``; the
    ``module.`` prefix of checkpoints saved from ``DataParallel`` is removed.
    """
    checkpoint = load_file(path, map_location)
    if isinstance(checkpoint, dict) and 'state_dict' not in checkpoint and checkpoint \
            and all(torch.is_tensor(v) for v in checkpoint.values()):
        checkpoint = {'state_dict': checkpoint}
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        raise CheckpointError(f"{path}: not a checkpoint (expected a state dict or a dict with 'state_dict')")
    state_dict = checkpoint['state_dict']
    if state_dict and all(key.startswith('module.') for key in state_dict):
        checkpoint['state_dict'] = {key[len('module.'):]: value for key, value in state_dict.items()}
    return checkpoint


def _load_failure(path, exc):
    """A short reason why ``torch.load(weights_only=True)`` failed (never advice to disable the safety)."""
    if not zipfile.is_zipfile(path):
        return 'not a file written by torch.save, or truncated'
    if 'Weights only load failed' in str(exc):
        return 'it holds objects other than tensors and plain containers; refused, as loading it could run code'
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _first(keys, count=3):
    keys = sorted(keys)
    shown = ', '.join(keys[:count])
    return shown + (f' (+{len(keys) - count} more)' if len(keys) > count else '')


def check_state_dict_fits(net, state_dict, path):
    """Raise CheckpointError naming the first missing/unexpected/mis-shaped keys, if any."""
    expected = net.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if not problems:
        wrong = [f"{k} {list(state_dict[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
                 if tuple(state_dict[k].shape) != tuple(v.shape)]
        if wrong:
            problems.append(f"shape mismatch: {_first(wrong)}")
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(net).__name__}: " + '; '.join(problems))


def load_network_weights(net, path, map_location='cpu'):
    """Load the weights of ``path`` into ``net`` (strict) and return the checkpoint dict.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not match ``net``.
    """
    return apply_weights(net, load_checkpoint(path, map_location), path)


def apply_weights(net, checkpoint, path):
    """Load the weights of an already read ``checkpoint`` (of file ``path``) into ``net`` (strict); returns it.

    Raises:
        CheckpointError: keys/shapes that do not match ``net``.
    """
    check_state_dict_fits(net, checkpoint['state_dict'], path)
    net.load_state_dict(checkpoint['state_dict'], strict=True)
    return checkpoint
