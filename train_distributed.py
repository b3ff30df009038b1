"""Processes of a training run: the torchrun process group (rank 0 of 1 when not distributed)."""
import os

import torch
import torch.distributed as dist


class Distributed:
    """Process group of a torchrun launch (rank 0 of 1 when not distributed)."""

    def __init__(self, device_kind):
        self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if self.enabled:
            if device_kind == 'cuda':
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group('nccl' if device_kind == 'cuda' else 'gloo')

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, model, device):
        """``model`` in DistributedDataParallel when distributed (else as it is).

        The gradient all-reduce then overlaps the backward pass.  ``find_unused_parameters``: the
        multi-scale disparity heads are never used by the step, and ObjPoseNet is not used by a batch
        without instances.  Parameters and buffers are broadcast from rank 0 when wrapping, and the
        buffers (BatchNorm statistics) again at every forward.
        """
        if not self.enabled:
            return model
        device_ids = [device.index] if device.type == 'cuda' else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def all_finite(self, value):
        """True when ``value`` is finite on every process."""
        finite = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
        if self.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def any_true(self, flag):
        """True when ``flag`` is true on any process (so that every process stops at the same step)."""
        if not self.enabled:
            return bool(flag)
        device = torch.device('cuda', self.local_rank) if dist.get_backend() == 'nccl' else torch.device('cpu')
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled:
            dist.destroy_process_group()
