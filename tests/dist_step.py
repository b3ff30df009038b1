"""Helper of test_train.py, run under torchrun: one training step per process, then save the weights.

Usage: torchrun --nproc_per_node 2 tests/dist_step.py DATA OUT_PREFIX
Each rank trains on a different batch; after the step it writes its parameters and the number of steps
taken to OUT_PREFIX.rankN.pt (batch-norm statistics stay per process until train.py broadcasts them after
the epoch).  The epoch has two steps, but rank 1 has a stop request (as from SIGTERM): every rank must
stop after the first step.
"""
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402
from projection import LossOptions  # noqa: E402


def main():
    data, prefix = sys.argv[1], sys.argv[2]
    args = train.build_parser().parse_args([data, '--name', 'dist', '--with-pretrain', '0', '-b', '1', '-j', '0',
                                            '-mni', '3', '--epoch-size', '2', '--device', 'cpu'])
    dist_ctx = train.Distributed('cpu')
    torch.manual_seed(dist_ctx.rank)  # different initialisations: the broadcast must align them
    train_loader, _ = train.make_loaders(args, dist_ctx)
    nets = train.build_networks(args, torch.device('cpu'))
    dist_ctx.broadcast_state(nets.values())
    optimizer = train.build_optimizer(args, nets)
    logs = train.Logs(os.path.dirname(prefix), args, enabled=False)
    state = train.TrainingState()
    stop = SimpleNamespace(requested=dist_ctx.rank == 1)
    train.train_one_epoch(args, nets, optimizer, train_loader, torch.device('cpu'), LossOptions.from_args(args),
                          state, logs, dist_ctx, os.path.dirname(prefix), stop)
    saved = {key: {k: v.detach().clone() for k, v in net.named_parameters()} for key, net in nets.items()}
    torch.save(dict(saved, steps=state.n_iter), f'{prefix}.rank{dist_ctx.rank}.pt')
    dist_ctx.close()


if __name__ == '__main__':
    main()
