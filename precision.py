"""How the networks run: mixed precision (``--amp``), memory layout (``--channels-last``), ``--compile``.

Only the three networks are affected.  Their outputs come back in float32, so the camera geometry,
the z-buffer, the ``grid_sample`` warps and every loss stay in float32 whatever the switches say.
bf16 works on CPUs (fast where oneDNN finds AMX or AVX-512 bf16 instructions) and on GPUs; fp16 is
for GPUs and needs the gradient scaler of :func:`make_grad_scaler`.
"""
from dataclasses import dataclass
from typing import Optional

import torch

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class CompileUnavailable(RuntimeError):
    """``--compile`` was asked for but ``torch.compile`` cannot run here (one-line message)."""


@dataclass(frozen=True)
class NetworkPrecision:
    """Runs a network under autocast (``dtype``) and/or on channels-last inputs; output in float32.

    The default (``dtype=None``, ``channels_last=False``) calls the network as it is.
    """

    device_type: str = 'cpu'
    dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @classmethod
    def from_flags(cls, amp, channels_last, device):
        """From ``--amp off|bf16|fp16`` and ``--channels-last`` for a ``torch.device``."""
        return cls(device_type=device.type, dtype=AMP_DTYPES[amp], channels_last=channels_last)

    def __call__(self, net, *inputs):
        """``net(*inputs)`` with this precision; a floating-point output is returned in float32."""
        if self.channels_last:
            inputs = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
        if self.dtype is None:
            return net(*inputs)
        with torch.autocast(self.device_type, dtype=self.dtype):
            output = net(*inputs)
        return output.float()


def prepare_networks(nets, channels_last=False, compile_networks=False):
    """Put the networks (a dict of modules) in channels-last layout and/or compile them, in place.

    ``nn.Module.compile`` keeps the parameter names, so checkpoints are unchanged.  Raises
    :class:`CompileUnavailable` when ``torch.compile`` cannot run here (no C++ compiler, unsupported platform).
    """
    for net in nets.values():
        if channels_last:
            net.to(memory_format=torch.channels_last)
    if compile_networks:
        check_compile_backend()
        for net in nets.values():
            net.compile()
    return nets


def check_compile_backend():
    """Compile and run a tiny function so a missing backend is reported before training starts."""
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2)
        probe(torch.randn(4))
    except Exception as error:  # noqa: BLE001  (any backend failure means --compile cannot be used)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CompileUnavailable(f"--compile: torch.compile is not available here ({first_line}); "
                           "train without --compile") from None


def make_grad_scaler(amp, device):
    """``torch.amp.GradScaler`` for ``--amp fp16`` (disabled, i.e. a pass-through, otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=amp == 'fp16')


def cpu_capability():
    """One line on this CPU's vector units: PyTorch's capability level and whether AMX is present."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    amx = 'amx_bf16' in flags
    avx512_bf16 = 'avx512_bf16' in flags
    return (f"cpu capability {capability}, avx512_bf16 {'yes' if avx512_bf16 else 'no'}, "
            f"amx_bf16 {'yes' if amx else 'no'}, torch threads {torch.get_num_threads()}")
