"""Probe what the Insta-DM objective does in a short run: disparity, pose and mask statistics per step.

    python -m experiments.diagnose_objective DATA --name probe [any train.py flag] \
        [--probe-steps 60 --probe-every 5 --probe-csv OUT.csv]

A diagnostic of issue 18 (why the rigid ``-mni 0`` and ``-o 0`` configurations do not learn on the
synthetic world), not a trainer: it builds the data, networks, optimiser and model with train.py's own
functions and flags, takes ``--probe-steps`` optimiser steps, and every ``--probe-every`` steps prints
(and writes to ``--probe-csv``) the mean target disparity, the mean ego translation (network units) and
the implied parallax ``|t| / depth``, the share of pairs whose translation points the way the camera drives, the share of pixels valid in the first projection (forward warp),
valid in the second projection, and kept by the auto-mask, and the loss terms.  train.py's
``--depth-scale`` and ``--antisymmetric-ego-pose`` apply as in training.
"""
import argparse
import importlib.util
import sys
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m experiments.diagnose_objective")

import torch

import train
from devices import select_device
from fileio import atomic_open
from loss_functions import photometric_and_geometry_maps
from train_data import make_loaders, to_device
from train_distributed import Distributed
from train_model import build_model, build_networks, build_optimizer

COLUMNS = ('step', 'disparity', 'ego_translation', 'parallax', 'forward_share', 'first_valid', 'second_valid', 'auto_mask_kept',
           'photo', 'geometry', 'smooth', 'obj_size', 'total')


def parse(argv):
    """train.py's flags plus the probe's own."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument('--probe-steps', type=int, default=60)
    probe.add_argument('--probe-every', type=int, default=5)
    probe.add_argument('--probe-csv', type=Path, default=None)
    probe_args, rest = probe.parse_known_args(argv)
    return probe_args, train.build_parser().parse_args(rest)


def forward_share(ego_source_from_view, layout):
    """Share of directed pairs whose EgoPoseNet ``t_z`` has the sign of a camera driving forward.

    Pose ``view -> source`` maps points of the view camera into the source camera; driving forward, a later
    camera sees the scene closer (``t_z < 0`` when the source is later than the view).  The references are
    ``t-d..t-1, t+1..t+d`` (``layout``: :class:`pairs.PairLayout`).
    """
    times = [0] + [r - layout.num_refs // 2 + (r >= layout.num_refs // 2) for r in range(layout.num_refs)]
    source_is_later = torch.tensor([times[source] > times[view] for view, source in layout.frame_pairs()])
    sign = torch.where(source_is_later, -1.0, 1.0)[layout.pair_index(ego_source_from_view.shape[0])]
    return float(((ego_source_from_view[:, 2] * sign.to(ego_source_from_view.device)) > 0).float().mean())


@torch.no_grad()
def step_statistics(outputs):
    """The probe's numbers of one step (``StepOutputs``) as a dict (mask shares in [0, 1])."""
    pairs = outputs.pairs
    target_disparity = pairs.layout.split_frames(outputs.disparities)[0]
    translation = outputs.ego_source_from_view[:, :3].norm(dim=1).mean()
    _, _, after = photometric_and_geometry_maps(pairs.views, pairs.sources, outputs.second.warped,
                                                outputs.warp_valid, outputs.view_depths, outputs.view_depths,
                                                with_auto_mask=True, with_ssim=False, with_mask=False)
    return {'forward_share': forward_share(outputs.ego_source_from_view, pairs.layout),
            'disparity': float(target_disparity.mean()),
            'ego_translation': float(translation),
            'parallax': float(translation / outputs.view_depths.mean()),
            'first_valid': float(outputs.ego_warp_valid.mean()),
            'second_valid': float(outputs.warp_valid.mean()),
            'auto_mask_kept': float(after.sum() / outputs.warp_valid.sum().clamp(min=1))}


def main(argv=None):
    probe, args = parse(argv)
    device = select_device(args.device)
    torch.manual_seed(args.seed)
    loader, _ = make_loaders(args, Distributed(device.type))
    nets = build_networks(args, device)
    optimizer = build_optimizer(args, nets)
    model = build_model(args, nets, device, Distributed(device.type))
    model.train()
    rows, step = [], 0
    while step < probe.probe_steps:
        for batch in loader:
            outputs = model(*to_device(batch, device))
            optimizer.zero_grad(set_to_none=True)
            outputs.total.backward()
            if torch.isfinite(outputs.total):
                optimizer.step()
            if step % probe.probe_every == 0 or step == probe.probe_steps - 1:
                row = {'step': step, **step_statistics(outputs),
                       **{name: float(outputs.losses[name].detach())
                          for name in ('photo', 'geometry', 'smooth', 'obj_size')},
                       'total': float(outputs.total.detach())}
                rows.append(row)
                print(' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in row.items()),
                      flush=True)
            step += 1
            if step >= probe.probe_steps:
                break
    if probe.probe_csv:
        with atomic_open(probe.probe_csv) as handle:
            lines = [','.join(COLUMNS)] + [','.join(str(row[c]) for c in COLUMNS) for row in rows]
            handle.write(('\n'.join(lines) + '\n').encode())
    return rows


if __name__ == '__main__':
    main()
