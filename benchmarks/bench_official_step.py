"""The official implementation's training step on the benchmark batch: seconds per step and peak memory.

Usage: python -m benchmarks.bench_official_step --official DIR [--height 128 --width 416 --batch 2 --mni 3 --steps 3]

``DIR`` is a checkout of the official release (github.com/SeokjuLee/Insta-DM), used read-only.  Its
``train.train`` runs unchanged on the batch of ``benchmarks/bench_train_step.py`` (every frame holds
``mni`` instances) with the settings of that benchmark (all losses, ``--with-ssim --with-mask
--with-auto-mask``, Adam as the official), so the two scripts measure the same work side by side.  To run
on a CPU and with today's libraries the harness only supplies what the official code imports but does not
use for a step, plus: the tensor method ``cuda`` returns the tensor itself, and ``torch_sparse.coalesce`` (its z-buffer's
"keep the largest inverse depth per pixel") is a ``scatter_reduce('amax')`` on the unique pixel indices.
Prints one JSON line: ``step_s`` (each timed step), ``peak_rss_mib`` (the process's peak resident memory)
and ``before_mib`` (resident memory before the first step).
"""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import types

import torch

from benchmarks.batches import make_batch, resident_mib


def coalesce(index, value, m, n, op='max'):
    """``torch_sparse.coalesce`` for the official forward warp: one entry per pixel, the largest value."""
    if op != 'max':
        raise NotImplementedError(op)
    linear = index[0] * n + index[1]
    unique, inverse = torch.unique(linear, return_inverse=True)
    largest = torch.full((unique.numel(),), float('-inf'), dtype=value.dtype).scatter_reduce(0, inverse, value, 'amax')
    return torch.stack([unique // n, unique % n]), largest


class Ignored:
    """Stands for the progress bars and loggers the official step writes to."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def import_official_train():
    """The official ``train`` module (this process runs in the official folder), with the imports a step does
    not use replaced."""
    stand_ins = {
        'torch_sparse': types.SimpleNamespace(coalesce=coalesce),
        'path': types.SimpleNamespace(Path=pathlib.Path),
        'blessings': types.SimpleNamespace(Terminal=Ignored),
        'progressbar': types.SimpleNamespace(ProgressBar=Ignored, Bar=Ignored, ETA=Ignored, Percentage=Ignored),
        'tensorboardX': types.SimpleNamespace(SummaryWriter=Ignored),
        'custom_transforms': types.SimpleNamespace(),
        'custom_transforms_val': types.SimpleNamespace(),
        'datasets.sequence_folders': types.SimpleNamespace(SequenceFolder=None),
        'utils': types.SimpleNamespace(save_checkpoint=None, viz_flow=None),
    }
    sys.modules.update(stand_ins)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    import train as official_train
    return official_train


def build_networks_and_optimizer():
    """The official networks (random initialisation) in DataParallel and its Adam with its parameter groups."""
    models = sys.modules['models']
    torch.manual_seed(0)
    disp = torch.nn.DataParallel(models.DispResNet(18, False))
    ego = torch.nn.DataParallel(models.EgoPoseNet(18, False))
    obj = torch.nn.DataParallel(models.ObjPoseNet(18, False))
    for net in (disp, ego, obj):
        net.module.init_weights()
    optimizer = torch.optim.Adam([{'params': disp.module.encoder.parameters(), 'lr': 1e-4},
                                  {'params': disp.module.decoder.parameters(), 'lr': 1e-4},
                                  {'params': disp.module.obj_height_prior, 'lr': 1e-5},
                                  {'params': ego.parameters(), 'lr': 1e-4},
                                  {'params': obj.parameters(), 'lr': 1e-4}], betas=(0.9, 0.999), weight_decay=0)
    return disp, ego, obj, optimizer


def official_args(batch, mni, save_path):
    """The official train()'s arguments: the loss settings of bench_train_step.py."""
    return argparse.Namespace(photo_loss_weight=2.0, geometry_consistency_weight=1.0, smooth_loss_weight=0.1,
                              scale_loss_weight=0.02, mof_consistency_loss_weight=0.1, height_loss_weight=0.0,
                              depth_loss_weight=0.0, debug_mode=False, print_freq=10 ** 9, with_ssim=True,
                              with_mask=True, with_auto_mask=True, padding_mode='zeros', with_only_obj=False,
                              mni=mni, batch_size=batch, save_path=pathlib.Path(save_path), log_full='log_full.csv')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--official', required=True, metavar='DIR', help='checkout of the official release')
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=416)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--mni', type=int, default=3)
    parser.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up step')
    parser.add_argument('--in-official', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.official, 'train.py')):
        sys.exit(f"error: --official {args.official}: no train.py (a checkout of the official release is expected)")
    if not args.in_official:
        result = subprocess.run([sys.executable, '-m', 'benchmarks.bench_official_step', '--in-official'] + sys.argv[1:],
                                cwd=args.official)
        sys.exit(result.returncode)
    tgt, refs, K, tgt_insts, ref_insts = make_batch(args.batch, args.height, args.width, args.mni)
    official_train = import_official_train()
    disp, ego, obj, optimizer = build_networks_and_optimizer()
    step_ends = []
    logger = types.SimpleNamespace(train_bar=types.SimpleNamespace(update=lambda i: step_ends.append(time.perf_counter())),
                                   train_writer=Ignored())
    loader = [(tgt, refs, K, K.inverse(), tgt_insts, ref_insts)] * (args.steps + 1)
    official_train.n_iter = 0
    official_train.device = torch.device('cpu')
    before = resident_mib()
    with tempfile.TemporaryDirectory() as save_path:
        official_train.train(official_args(args.batch, args.mni, save_path), loader, disp, ego, obj, optimizer,
                             args.steps + 1, logger, Ignored())
    print(json.dumps({'before_mib': round(before),
                      'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      'step_s': [round(b - a, 3) for a, b in zip(step_ends[1:], step_ends[2:])]}))


if __name__ == '__main__':
    main()
