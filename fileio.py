"""Atomic file writing shared by every writer of the project (checkpoints, datasets, demo outputs)."""
import contextlib
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path):
    """Open a temporary binary file next to ``path``; on success it replaces ``path`` (``os.replace``).

    A reader, a crash or Ctrl-C never sees half a file, and an existing ``path`` stays intact until
    the new one is complete.  The file gets the usual permissions (``0o666`` minus the umask).
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
    except BaseException:
        if tmp_path.exists():
            tmp_path.unlink()
        raise
