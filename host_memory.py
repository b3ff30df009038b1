"""How a training process's CPU heap gives freed tensors back to the system (glibc's ``mallopt``).

PyTorch's CPU tensors come from ``malloc``.  glibc serves a large block with ``mmap`` (returned to the
system by ``free``) only while the block is above its *mmap threshold*, and it raises that threshold to the
size of every mmapped block freed, up to 32 MiB.  After the first training step nearly every activation is
therefore carved from the heap, where freed blocks stay resident until they happen to lie at its top:
about 0.4 GB of the step's peak resident memory at 128x416 (README, "Memory (CPU)").  Fixing the threshold keeps
large tensors on ``mmap``, so the peak is close to what the step really holds; the price is that every
large tensor is then fresh memory the kernel must map and zero, which made a CPU step 2 % (16 MiB) to 17 %
(1 MiB) slower on the development host.  ``train.py --mmap-threshold MIB`` applies it; it is off by default.

This is a property of the C library, not of PyTorch: elsewhere (musl, macOS, Windows) nothing is changed.
"""
import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3        # mallopt parameter (glibc malloc.h)
MAX_MMAP_THRESHOLD_MIB = 32  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit hosts: mallopt refuses more


def set_mmap_threshold(mib):
    """Serve allocations of at least ``mib`` MiB with ``mmap`` from now on (0: leave glibc's adaptive default).

    ``mib`` at most :data:`MAX_MMAP_THRESHOLD_MIB`.  Returns True when glibc accepted the setting, False when
    it was not applied (``mib`` 0, or the C library is not glibc).
    """
    if mib <= 0:
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mib * 2 ** 20)))


def _glibc_mallopt():
    """glibc's ``mallopt`` (``int mallopt(int, int)``), or None when the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None)
        libc.gnu_get_libc_version     # only glibc has it (AttributeError elsewhere)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
