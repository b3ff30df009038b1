"""Atomic file writing shared by every writer of the project (checkpoints, datasets, demo outputs),
the check that an output folder can be written before any work starts, and the reader of list files."""
import contextlib
import datetime
import errno
import os
import secrets
from pathlib import Path


class OutputError(OSError):
    """An output location that cannot be written, or a write that failed (one-line message naming the path).

    Built as ``OutputError(errno, message)``; ``str()`` is the message alone.
    """

    def __str__(self):
        return self.strerror


def disk_full(path):
    """The error for a write to ``path`` that ran out of space."""
    return OutputError(errno.ENOSPC, f"{path}: no space left on device")


@contextlib.contextmanager
def atomic_open(path):
    """Open a temporary binary file next to ``path``; on success it replaces ``path`` (``os.replace``).

    A reader, a crash or Ctrl-C never sees half a file, and an existing ``path`` stays intact until
    the new one is complete.  The file gets the usual permissions (``0o666`` minus the umask).  A full
    disk raises :class:`OutputError` "``path``: no space left on device".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except OSError as error:
        _remove_quietly(tmp_path)
        if error.errno == errno.ENOSPC:
            raise disk_full(path) from None
        raise
    except BaseException:
        _remove_quietly(tmp_path)
        raise


def _remove_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def check_writable_folder(path, flag):
    """Raise :class:`OutputError` unless the folder ``path`` exists or can be created, and files can be written in it.

    Nothing is created: the deepest existing folder on the way is probed with a temporary file
    (removed at once), so an existing file in the way, ``/proc``, ``/sys``, a read-only file system or
    a folder without write permission is refused before any work.  ``flag`` names the option in
    the message ("--checkpoint-root /proc/x: cannot write there (No such file or directory)").
    """
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(errno.ENOTDIR, f"{flag} {path}: {existing} is an existing file, not a folder")
    probe = existing / f'.write-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp'
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise OutputError(error.errno, f"{flag} {path}: cannot write there ({error.strerror})") from None
    os.unlink(probe)


def new_run_folder(parent, create=False):
    """A folder ``PARENT/TIMESTAMP`` (``MM-DD-HH:MM:SS``, the official naming) that does not exist yet.

    A second run started in the same second gets ``TIMESTAMP-2`` (then ``-3``, ...).  The folder is
    created (with its parents) when ``create``; otherwise only its name is chosen.
    """
    base = Path(parent) / datetime.datetime.now().strftime('%m-%d-%H:%M:%S')
    folder, suffix = base, 1
    while folder.exists():
        suffix += 1
        folder = Path(f'{base}-{suffix}')
    if create:
        folder.mkdir(parents=True)
    return folder


def read_list_lines(path):
    """The stripped, non-empty lines of a list file (scene lists, file lists), read as UTF-8 with any byte-order
    mark (Windows Notepad's) dropped, so that it is not part of the first name.  A file in another encoding (e.g.
    the UTF-16 of PowerShell's ``>``) raises a ValueError whose message the callers put after the path."""
    try:
        text = Path(path).read_text(encoding='utf-8-sig')
    except UnicodeDecodeError as error:
        raise ValueError(f"not a UTF-8 text file (byte {error.start}: {error.reason}); write one entry per line "
                         "in UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
