"""Crash-consistent checkpoint sets: the files of one save are committed together, or not at all.

A training save writes several files (three networks, the optimiser/counter state, and sometimes
the best-model files and a kept copy).  Each file alone is written atomically, but a crash between
two of them would leave networks and state of different epochs.  A save therefore runs in three
steps:

1. every file is written (and fsynced) under a pending name ``.NAME.SAVE_ID.pending``;
2. the manifest ``checkpoint_set.json`` (save id, epoch, iteration, file names) replaces the previous
   one atomically: this is the commit point;
3. the pending files are renamed to their names.

:func:`recover` completes or undoes an interrupted save: pending files of the committed save are
renamed (roll forward), any other pending file and every leftover ``.tmp`` file is deleted (roll
back: the files of the previous set were never touched).  It runs before every save and before a
resume.  The files keep their official names and formats, so ``test_disp.py``/``demo.py`` and the
official code read them as before.
"""
import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from checkpoint_io import CheckpointError, atomic_torch_save
from fileio import OutputError, atomic_open, disk_full

MANIFEST = 'checkpoint_set.json'
PENDING_SUFFIX = '.pending'
TEMPORARY_SUFFIX = '.tmp'


def _pending_path(folder, name, save_id):
    return Path(folder) / f'.{name}.{save_id}{PENDING_SUFFIX}'


def _sync_folder(folder):
    """Make the renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit_file(pending, path):
    """Give a pending file of a committed save its name."""
    os.replace(pending, path)


def read_manifest(folder):
    """The manifest of the last committed save of ``folder`` (a dict), or ``None`` when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not {'save_id', 'epoch', 'n_iter', 'files'} <= set(manifest):
        raise CheckpointError(f"{path}: not a checkpoint-set manifest")
    return manifest


def recover(folder):
    """Finish (roll forward) or undo (roll back) a save interrupted in ``folder``; returns the manifest or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    manifest = read_manifest(folder)
    if manifest is not None:
        for name in manifest['files']:
            pending = _pending_path(folder, name, manifest['save_id'])
            if pending.exists():
                _commit_file(pending, folder / name)
        _sync_folder(folder)
    for leftover in folder.iterdir():
        if leftover.name.startswith('.') and leftover.name.endswith((PENDING_SUFFIX, TEMPORARY_SUFFIX)):
            leftover.unlink()
    return manifest


def _copy(source, destination):
    """Copy a written file (cheaper than serialising its object again; not a hard link, which a later
    ``cp`` over one name would change under the other)."""
    with open(source, 'rb') as src, atomic_open(destination) as dst:
        shutil.copyfileobj(src, dst)


def save_set(folder, objects, epoch, n_iter):
    """Save ``{file name: object}`` (``torch.save``) in ``folder`` as one crash-consistent set.

    Every file is committed with the others or, after a crash before the commit point, not at all.
    An object given under several names (the latest and the best model) is written once.
    Returns the manifest written.
    """
    folder = Path(folder)
    recover(folder)
    save_id = f'e{epoch}-i{n_iter}-{secrets.token_hex(4)}'
    written = {}
    for name, obj in objects.items():
        pending = _pending_path(folder, name, save_id)
        try:
            if id(obj) in written:
                _copy(written[id(obj)], pending)
            else:
                atomic_torch_save(obj, pending)
                written[id(obj)] = pending
        except OutputError as error:
            raise (disk_full(folder / name) if error.errno == errno.ENOSPC else error) from None
    manifest = {'save_id': save_id, 'epoch': epoch, 'n_iter': n_iter, 'files': sorted(objects)}
    with atomic_open(folder / MANIFEST) as handle:
        handle.write((json.dumps(manifest, indent=2) + '\n').encode())
    for name in manifest['files']:
        _commit_file(_pending_path(folder, name, save_id), folder / name)
    _sync_folder(folder)
    return manifest


def check_member(path, checkpoint, manifest):
    """Raise CheckpointError unless ``checkpoint`` (a loaded file of the set) carries the manifest's epoch and iteration."""
    found = (checkpoint.get('epoch'), checkpoint.get('n_iter'))
    expected = (manifest['epoch'], manifest['n_iter'])
    if found != expected:
        raise CheckpointError(f"{path}: epoch {found[0]}, iteration {found[1]}, but the committed checkpoint set "
                              f"({Path(path).parent / MANIFEST}) is epoch {expected[0]}, iteration {expected[1]}: "
                              f"the run folder was changed by hand")
