"""Seconds per optimisation step of Insta-DM and peak memory, on pre-loaded batches.

Usage: python -m benchmarks.bench_train_step [--height 128 --width 416 --batch 2 --mni 1 3 8 --steps 5 --device cpu]
                                            [--counts 1 2] [--data KITTI_VIS_DIR]
                                            [--amp off|bf16|fp16] [--channels-last] [--compile] [--compare]
                                            [--mmap-threshold MIB] [--lean-activations on|off] [--saved]
Settings of the measurement: all losses on (-p 2 -c 1 -s 0.1 -o 0.02 -mc 0.1 --with-ssim --with-mask
--with-auto-mask), the optimiser of train.py.  Without ``--data`` every frame holds exactly ``mni``
matched instances (the worst case), and one more row uses ``mni`` 3 with ``--counts`` instances in the
frames of the successive samples (default 1 and 2: 12 ObjPoseNet passes per step, a KITTI-like
density); with ``--data`` the batches are the first training batches of that dataset (with the
training augmentation), so the instance counts are the association's, and the mean count is printed.
Each configuration runs in a fresh process so its peak resident memory is its own.  Also prints the
parts of a step, each timed alone: the three networks' forward and backward passes, the geometry and
losses (forward and backward, with stand-in networks that cost nothing) and the optimiser step.
``--amp`` / ``--channels-last`` / ``--compile`` run the networks as train.py's flags of the same names;
``--compare`` prints one row per variant (float32, float32 + channels-last, bf16, bf16 + channels-last,
and with ``--compile`` also bf16 + channels-last + compile) with the speed-up over float32 and the loss term
of the first step (the same weights and batch in every variant) furthest from float32's, relative to it.
``--saved`` prints what one forward pass keeps for the backward pass, by network (torch's saved-tensor
hooks), and stops.  ``--mmap-threshold`` sets glibc's mmap threshold and ``--lean-activations`` the networks' lean
backward passes (models/lean_ops.py) as train.py's flags of the same names (host_memory.py).
Peak memory: on CPU the process's peak resident memory over the timed steps (what
``benchmarks/bench_official_step.py`` reports for the official step) and the step's own share of it (that peak
minus what the process held before the first step); on CUDA ``torch.cuda.max_memory_allocated`` of the steps.
The CPU's capability (vector units, AMX) is printed first: bf16 is only fast where oneDNN finds AMX or
AVX-512 bf16 instructions.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from benchmarks.batches import make_batch, resident_mib
from benchmarks.timing import median_seconds
import host_memory
import precision
from models import ModelConfig, build_networks, set_lean_activations
from projection import LossOptions, run_step
from train import build_parser
from train_model import build_optimizer


def load_batches(args, count=4):
    """Pre-loaded batches: synthetic rectangles, or the first ``count`` batches of ``--data``."""
    if not args.data:
        return [make_batch(args.batch, args.height, args.width, args.mni[0], counts=args.counts)]
    from datasets.custom_transforms import train_transform
    from datasets.sequence_folders import SequenceFolder
    dataset = SequenceFolder(args.data, seed=0, max_num_instances=args.mni[0], transform=train_transform())
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=False)
    batches = []
    for tgt, refs, K, _, tgt_insts, ref_insts in loader:
        batches.append((tgt, refs, K, tgt_insts, ref_insts))
        if len(batches) == count:
            break
    return batches


def objects_per_step(batch):
    """ObjPoseNet passes of one step: every instance of every directed pair."""
    tgt_insts, ref_insts = batch[3], batch[4]
    return int(sum(insts[:, 0, 0, 0].sum() for insts in tgt_insts + ref_insts))


class StubDispNet(torch.nn.Module):
    """Stand-in for DispResNet that costs nothing: a 1x1 convolution and softplus (positive disparity)."""

    def __init__(self):
        super().__init__()
        self.obj_height_prior = torch.nn.Parameter(torch.tensor(0.02))
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, img):
        return F.softplus(self.conv(img)) + 0.1


class StubPoseNet(torch.nn.Module):
    """Stand-in for EgoPoseNet / ObjPoseNet: the mean colours of both images through a linear layer."""

    def __init__(self, num_outputs):
        super().__init__()
        self.linear = torch.nn.Linear(6, num_outputs)

    def forward(self, img1, img2):
        return 0.01 * self.linear(torch.cat([img1, img2], 1).mean((2, 3)))


def saved_for_backward_mib(nets, batch):
    """MiB the step's forward pass keeps for the backward pass, by owner: each network and the rest.

    Every tensor autograd saves is counted once (by storage), under the network whose forward saved it
    first; parameters are not counted.
    """
    owner = ['geometry and losses']
    for name, net in zip(('DispResNet', 'EgoPoseNet', 'ObjPoseNet'), nets):
        net.register_forward_pre_hook(lambda module, inputs, name=name: owner.__setitem__(0, name))
        net.register_forward_hook(lambda module, inputs, output: owner.__setitem__(0, 'geometry and losses'))
    parameters = {p.untyped_storage().data_ptr() for net in nets for p in net.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved.setdefault(storage.data_ptr(), (owner[0], storage.nbytes()))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run_step(*nets, *batch, LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True))
    totals = {}
    for name, nbytes in saved.values():
        totals[name] = totals.get(name, 0) + nbytes / 2 ** 20
    return totals


def networks_pass(nets, batch, num_objects, run=precision.NetworkPrecision()):
    """Forward + backward of the three networks on the step's inputs alone (no geometry, no losses)."""
    for net in nets:
        net.zero_grad()
    tgt, refs = batch[0], batch[1]
    loss = run(nets[0], torch.cat([tgt] + refs)).mean()
    loss = loss + run(nets[1], torch.cat([tgt] * len(refs) + refs), torch.cat(refs + [tgt] * len(refs))).mean()
    if num_objects:
        objects = tgt[:1].expand(num_objects, -1, -1, -1)
        loss = loss + run(nets[2], objects, objects).mean()
    loss.backward()


def measure(args):
    """One configuration in this process; prints a JSON line."""
    device = torch.device(args.device)
    host_memory.set_mmap_threshold(args.mmap_threshold)
    torch.manual_seed(0)
    nets = [net.to(device) for net in build_networks(ModelConfig(resnet_layers=18)).values()]
    for net in nets:
        set_lean_activations(net, args.lean_activations == 'on')
    train_args = build_parser().parse_args(['unused', '--name', 'bench'])
    optimizer = build_optimizer(train_args, dict(zip(('disp', 'ego', 'obj'), nets)))
    precision.prepare_networks(dict(enumerate(nets)), channels_last=args.channels_last, compile_networks=args.compile)
    run = precision.NetworkPrecision.from_flags(args.amp, args.channels_last, device)
    scaler = precision.make_grad_scaler(args.amp, device)
    stubs = [StubDispNet().to(device), StubPoseNet(6).to(device), StubPoseNet(3).to(device)]
    batches = [[x.to(device) if torch.is_tensor(x) else [t.to(device) for t in x] for x in batch]
               for batch in load_batches(args)]
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    counter = iter(range(10 ** 9))
    num_objects = round(sum(objects_per_step(batch) for batch in batches) / len(batches))

    first_losses = {}

    def step():
        optimizer.zero_grad(set_to_none=True)   # before the forward pass, as train_loop does
        outputs = run_step(*nets, *batches[next(counter) % len(batches)], options, run)
        if not first_losses:   # the first step: the same weights and batch in every configuration
            first_losses.update({name: float(value) for name, value in outputs.losses.items()},
                                total=float(outputs.total))
        scaler.scale(outputs.total).backward()
        scaler.step(optimizer)
        scaler.update()

    def geometry_and_losses():
        run_step(*stubs, *batches[next(counter) % len(batches)], options).total.backward()

    before_mib = resident_mib()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    result = {'mni': args.mni[0], 'objects': num_objects, 'step_s': median_seconds(step, args.steps, device)}
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(step_peak_mib=(torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda'
                                 else peak_rss_mib - before_mib),
                  steps_peak_rss_mib=peak_rss_mib,
                  networks_s=median_seconds(lambda: networks_pass(nets, batches[0], num_objects, run), args.steps,
                                            device),
                  geometry_s=median_seconds(geometry_and_losses, args.steps, device),
                  optimizer_s=median_seconds(optimizer.step, args.steps, device),
                  peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  first_losses=first_losses)
    print(json.dumps(result))


PRECISION_VARIANTS = (('float32', 'off', False, False), ('float32 + channels-last', 'off', True, False),
                      ('bf16', 'bf16', False, False), ('bf16 + channels-last', 'bf16', True, False),
                      ('bf16 + channels-last + compile', 'bf16', True, True))


def run_configuration(args, mni, counts=None, amp=None, channels_last=None, compile_networks=None):
    """Measure one configuration in a fresh process (so its peak memory is its own).

    ``amp``, ``channels_last``, ``compile_networks`` default to the command line's flags.
    """
    amp = args.amp if amp is None else amp
    channels_last = args.channels_last if channels_last is None else channels_last
    compile_networks = args.compile if compile_networks is None else compile_networks
    command = [sys.executable, '-m', 'benchmarks.bench_train_step', '--single', '--height', str(args.height), '--width', str(args.width),
               '--batch', str(args.batch), '--mni', str(mni), '--steps', str(args.steps), '--device', args.device,
               '--amp', amp, '--mmap-threshold', str(args.mmap_threshold),
               '--lean-activations', args.lean_activations] + ['--channels-last'] * channels_last + ['--compile'] * compile_networks
    if counts:
        command += ['--counts'] + [str(c) for c in counts]
    if args.data:
        command += ['--data', args.data]
    line = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    return json.loads(line)


def largest_relative_difference(losses, reference):
    """``(term, |a - b| / |b|)`` of the loss term (or total) furthest from ``reference``'s, relative to it."""
    differences = {name: abs(losses[name] - value) / max(abs(value), 1e-12) for name, value in reference.items()}
    term = max(differences, key=differences.get)
    return term, differences[term]


def compare_precisions(args):
    """One row per precision variant at ``--mni`` (its first value); speed-up over float32, and the loss term
    of the first step (same weights and batch) furthest from float32's."""
    memory = 'step peak GPU MiB' if args.device.startswith('cuda') else 'step peak MiB'
    print(f"{'networks':<32} {'s/step':>8} {'images/s':>9} {'speed-up':>9} {memory:>18} {'peak RSS MiB':>13} "
          f"{'largest loss-term difference':>30}")
    reference = None
    for name, amp, channels_last, compile_networks in PRECISION_VARIANTS:
        if compile_networks and not args.compile:
            continue
        result = run_configuration(args, args.mni[0], args.counts, amp, channels_last, compile_networks)
        reference = reference or result
        term, difference = largest_relative_difference(result['first_losses'], reference['first_losses'])
        print(f"{name:<32} {result['step_s']:>8.3f} {args.batch / result['step_s']:>9.2f} "
              f"{reference['step_s'] / result['step_s']:>8.2f}x {result['step_peak_mib']:>18.0f} "
              f"{result['steps_peak_rss_mib']:>13.0f} {f'{100 * difference:.3f} % ({term})':>30}", flush=True)
    print("largest loss-term difference: of the first step's loss terms and total (same weights and batch), the "
          "one furthest from float32's, relative to it")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=416)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--mni', type=int, nargs='+', default=[1, 3, 8])
    parser.add_argument('--counts', type=int, nargs='+', default=None,
                        help='instances per frame of successive samples for the extra mni-3 row (default 1 2)')
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--data', default=None, help='KITTI-VIS folder to take the batches from')
    parser.add_argument('--amp', choices=sorted(precision.AMP_DTYPES), default='off', help='as train.py --amp')
    parser.add_argument('--channels-last', action='store_true', help='as train.py --channels-last')
    parser.add_argument('--compile', action='store_true', help='as train.py --compile (with --compare: add its row)')
    parser.add_argument('--lean-activations', choices=['on', 'off'], default='off', help='as train.py --lean-activations')
    parser.add_argument('--mmap-threshold', type=float, default=0, metavar='MIB',
                        help='as train.py --mmap-threshold (0: the C library default)')
    parser.add_argument('--compare', action='store_true',
                        help='one row per precision variant (float32, channels-last, bf16, ...) at the first --mni')
    parser.add_argument('--saved', action='store_true',
                        help='print what the forward pass keeps for the backward pass, by network (float32, '
                             'the first --mni), and stop')
    parser.add_argument('--single', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        measure(args)
        return
    device = torch.device(args.device)
    print(f"{args.height}x{args.width}, batch {args.batch}, device {args.device}, torch {torch.__version__}")
    print(torch.cuda.get_device_name(device) if device.type == 'cuda' else precision.cpu_capability())
    print(f"batches: {args.data or 'synthetic rectangles'}")
    if args.saved:
        torch.manual_seed(0)
        nets = list(build_networks(ModelConfig(resnet_layers=18)).values())
        for net in nets:
            set_lean_activations(net, args.lean_activations == 'on')
        print(f"lean activations {args.lean_activations}")
        totals = saved_for_backward_mib(nets, load_batches(args)[0])
        for name, mib in totals.items():
            print(f"saved for backward, {name:<20} {mib:8.1f} MiB")
        print(f"saved for backward, {'total':<20} {sum(totals.values()):8.1f} MiB")
        return
    if args.compare:
        compare_precisions(args)
        return
    print(f"networks: amp {args.amp}, channels-last {args.channels_last}, compile {args.compile}, "
          f"lean activations {args.lean_activations}; mmap threshold {args.mmap_threshold or 'default'} MiB")
    configurations = [(mni, None) for mni in args.mni]
    if not args.data:
        configurations.append((3, args.counts or [1, 2]))
    memory = 'step peak GPU MiB' if device.type == 'cuda' else 'step peak MiB'
    print(f"{'mni':>4} {'instances/frame':>16} {'objects/step':>13} {'s/step':>8} {'images/s':>9} {'networks s':>11} "
          f"{'geometry+losses s':>18} {'Adam s':>7} {memory:>18} {'peak RSS MiB':>13}")
    for mni, counts in configurations:
        result = run_configuration(args, mni, counts)
        density = 'dataset' if args.data else '+'.join(str(c) for c in counts) if counts else str(mni)
        images_per_s = args.batch / result['step_s']
        print(f"{mni:>4} {density:>16} {result['objects']:>13} {result['step_s']:>8.3f} {images_per_s:>9.2f} "
              f"{result['networks_s']:>11.3f} {result['geometry_s']:>18.3f} {result['optimizer_s']:>7.3f} "
              f"{result['step_peak_mib']:>18.0f} {result['steps_peak_rss_mib']:>13.0f}")
    print("networks: their forward + backward passes alone; geometry+losses: the step's forward + backward with "
          "stand-in networks that cost nothing; Adam: the optimiser step")


if __name__ == '__main__':
    main()
