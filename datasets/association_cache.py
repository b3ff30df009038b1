"""On-disk cache of instance associations (they do not depend on the augmentation).

One small ``.npy`` file per frame pair holds the accepted matches ``[k,2]`` (stored segmentation
channel of the earlier frame, of the later frame), uncapped and in acceptance order, so the same
entry serves every ``mni`` (capping keeps the first ``mni`` rows) and both samples that use the
pair.  The file name is a hash of the pair's input files (absolute path, size, ``mtime_ns``) and of
the algorithm version: editing, replacing or touching an input gives a new key, so stale entries are
never read.  Entries are written atomically (temporary file + ``os.replace``), which makes concurrent
DataLoader workers safe: two workers computing the same pair write identical content.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from datasets.io import DatasetError, save_npy

ALGORITHM_VERSION = 1
DEFAULT_SUBDIR = Path('.cache') / 'association'


class AssociationCache:
    """Cache of pair associations in ``directory`` (created on first write)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self._write_failed = False

    def key(self, files):
        """Hex key of a list of input files from their absolute paths, sizes and ``mtime_ns``."""
        stamps = [ALGORITHM_VERSION]
        for path in files:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                raise DatasetError(path, "file not found") from None
            stamps.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
        return hashlib.sha1(json.dumps(stamps).encode()).hexdigest()

    def path(self, key):
        """File of an entry: ``directory/KEY.npy``."""
        return self.directory / f"{key}.npy"

    def load(self, key, num_channels_a, num_channels_b):
        """The stored ``[k,2]`` int64 matches of ``key``, or ``None`` when absent or unusable.

        An entry whose channel numbers do not fit ``1..num_channels_a`` / ``1..num_channels_b``
        (or that cannot be read) is ignored, so it is recomputed and overwritten.
        """
        try:
            pairs = np.load(self.path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            return None
        if pairs.size and (pairs.min() < 1 or pairs[:, 0].max() > num_channels_a or pairs[:, 1].max() > num_channels_b):
            return None
        return pairs.astype(np.int64)

    def store(self, key, pairs):
        """Write ``[k,2]`` matches atomically; a read-only location only disables writing (one warning)."""
        if self._write_failed:
            return
        try:
            save_npy(self.path(key), np.asarray(pairs, np.int32).reshape(-1, 2))
        except OSError as error:
            self._write_failed = True
            warnings.warn(f"{self.directory}: cannot write the association cache ({error.strerror}); "
                          "associations will be recomputed", RuntimeWarning)
