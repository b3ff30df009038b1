"""Helper of test_train.py, run under torchrun: DistributedDataParallel training steps, one process per rank.

Usage (from the repository root): torchrun --nproc_per_node 2 -m tests.dist_step DATA OUT_PREFIX
Rank ``r`` trains on training sample ``r`` (no augmentation), in an epoch of two steps; rank 1 has a stop
request (as from SIGTERM), so every rank must stop after the first step.  The processes start from different
random weights (DistributedDataParallel must broadcast rank 0's); rank 0 writes the common initial state to
OUT_PREFIX.init.pt, and every rank its parameters after the step with their (all-reduced) gradients and the
number of steps taken to OUT_PREFIX.rankN.pt as ``{network: {name: (parameter, gradient)}, 'steps': n}``.
"""
import os
import sys
from types import SimpleNamespace

import torch

import train
from datasets.custom_transforms import valid_transform
from datasets.sequence_folders import SequenceFolder
from train_checkpoints import TrainingState
from train_distributed import Distributed
from train_logs import Logs
from train_loop import train_one_epoch
from train_model import build_model, build_networks, build_optimizer


def main():
    data, prefix = sys.argv[1], sys.argv[2]
    args = train.build_parser().parse_args([data, '--name', 'dist', '--with-pretrain', '0', '-b', '1', '-j', '0',
                                            '-mni', '3', '--epoch-size', '2', '--device', 'cpu'])
    dist_ctx = Distributed('cpu')
    torch.manual_seed(dist_ctx.rank)
    nets = build_networks(args, torch.device('cpu'))
    optimizer = build_optimizer(args, nets)
    model = build_model(args, nets, torch.device('cpu'), dist_ctx)
    if dist_ctx.is_main:
        torch.save({key: net.state_dict() for key, net in nets.items()}, f'{prefix}.init.pt')
    dataset = SequenceFolder(data, seed=0, shuffle=False, max_num_instances=args.mni, transform=valid_transform())
    batches = [torch.utils.data.default_collate([dataset[dist_ctx.rank]])] * 2
    logs = Logs(os.path.dirname(prefix), args, enabled=False)
    state = TrainingState()
    stop = SimpleNamespace(requested=dist_ctx.rank == 1)
    train_one_epoch(args, model, optimizer, batches, torch.device('cpu'), state, logs, dist_ctx, os.path.dirname(prefix),
                    stop)
    saved = {key: {name: (p.detach().clone(), p.grad) for name, p in net.named_parameters()}
             for key, net in nets.items()}
    torch.save(dict(saved, steps=state.n_iter), f'{prefix}.rank{dist_ctx.rank}.pt')
    dist_ctx.close()


if __name__ == '__main__':
    main()
