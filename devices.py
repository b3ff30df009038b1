"""Device selection shared by every command-line tool (``--device auto|cpu|cuda``)."""
import torch


def select_device(name, index=None):
    """``torch.device`` for ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    ``index`` picks the GPU for a bare ``cuda``/``auto`` (the local rank under torchrun).
    Raises a one-line ValueError for an unknown name or CUDA requested without a GPU.
    """
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type == 'cuda' and device.index is None and index is not None:
        device = torch.device('cuda', index)
    return device


def synchronize(device):
    """Wait for queued GPU work (so timings measure it)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
