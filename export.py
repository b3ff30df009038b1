"""Export the networks to ONNX or TorchScript for deployment, verified against PyTorch.

    python export.py --pretrained-dispnet CKPT [--pretrained-ego-pose CKPT --pretrained-obj-pose CKPT] \
        --format onnx|torchscript [--img-height 256 --img-width 832 --resnet-layers 18 --output-dir OUT \
         --verify-images IMG [IMG ...]]

Writes ``OUT/dispnet.onnx`` (``.pt`` for TorchScript), ``OUT/ego_pose.*`` and ``OUT/obj_pose.*`` for
the checkpoints given, and ``OUT/export.json`` (inputs, outputs, image size, normalisation and the
measured differences).  Each network has a dynamic batch axis and the given image size; the ONNX
graph is checked with ``onnx.checker``.  Before a file is moved into place the exported network
and PyTorch are run on a random batch of 3 and on real images (``--verify-images``, or by default
two frames of the synthetic street world): the largest absolute difference is printed, and the
export is refused when it exceeds 1e-4 of the output's magnitude.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import torch

import models
from checkpoint_io import CheckpointError, load_network_weights
from exported_models import (NETWORK_IO, ExportError, OnnxNetwork, check_difference, compare_outputs, export_onnx,
                             export_torchscript, load_torchscript, temporary_path)
from fileio import OutputError, atomic_open, check_writable_folder
from network_input import check_size_flags, load_network_input, to_network_input

SUFFIXES = {'onnx': '.onnx', 'torchscript': '.pt'}
VERIFY_BATCH = 3
EXAMPLE_BATCH = 2


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pretrained-dispnet', default=None, help='DispResNet checkpoint')
    parser.add_argument('--pretrained-ego-pose', default=None, help='EgoPoseNet checkpoint (optional)')
    parser.add_argument('--pretrained-obj-pose', default=None, help='ObjPoseNet checkpoint (optional)')
    parser.add_argument('--format', choices=sorted(SUFFIXES), default='onnx', help='onnx (default) or torchscript')
    parser.add_argument('--img-height', type=int, default=256, help='input height of the exported networks')
    parser.add_argument('--img-width', type=int, default=832, help='input width of the exported networks')
    parser.add_argument('--resnet-layers', type=int, default=18, choices=[18, 50], help='DispResNet encoder depth')
    parser.add_argument('--output-dir', default='outputs/export', help='where the exported files go')
    parser.add_argument('--verify-images', nargs='+', default=None, metavar='IMG',
                        help='real frames to verify on (2 or more consecutive frames for the pose networks); '
                             'default: two frames of the synthetic street world')
    return parser


def check_arguments(args):
    """One-line ValueError for sizes the networks cannot take or nothing to export."""
    check_size_flags({'--img-height': args.img_height, '--img-width': args.img_width})
    if not any((args.pretrained_dispnet, args.pretrained_ego_pose, args.pretrained_obj_pose)):
        raise ValueError("nothing to export: give --pretrained-dispnet and/or --pretrained-ego-pose / "
                         "--pretrained-obj-pose")
    if args.verify_images is not None and len(args.verify_images) < 2 and \
            (args.pretrained_ego_pose or args.pretrained_obj_pose):
        raise ValueError("--verify-images: the pose networks need at least 2 consecutive frames")


def requested_networks(args):
    """``[(file stem, network with its weights, checkpoint path)]`` for the checkpoints given."""
    chosen = []
    config = models.ModelConfig(resnet_layers=args.resnet_layers)
    for stem, path, kind in (('dispnet', args.pretrained_dispnet, 'disp'),
                             ('ego_pose', args.pretrained_ego_pose, 'ego'),
                             ('obj_pose', args.pretrained_obj_pose, 'obj')):
        if path:
            net = models.build_network(kind, config)
            load_network_weights(net, path)
            chosen.append((stem, net.eval(), path))
    return chosen


def real_frames(args):
    """``[F,3,H,W]`` normalised real frames: ``--verify-images``, or two synthetic street frames."""
    if args.verify_images:
        return torch.stack([load_network_input(path, args.img_height, args.img_width) for path in args.verify_images])
    from data.synthetic import render_scene
    scene = render_scene(seed=0, index=0, height=args.img_height, width=args.img_width, frames=2, min_cars=2)
    return torch.stack([to_network_input(image) for image in scene.images])


def verification_inputs(stem, frames, height, width):
    """``{label: inputs}``: a random batch of ``VERIFY_BATCH`` and the real frames (pairs for pose networks)."""
    generator = torch.Generator().manual_seed(1)
    count = len(NETWORK_IO[stem][0])
    random = tuple(torch.rand(VERIFY_BATCH, 3, height, width, generator=generator) * 2 - 1 for _ in range(count))
    real = (frames,) if count == 1 else (frames[:-1], frames[1:])
    return {'random': random, 'real': real}


def export_network(stem, net, args, frames, out_dir):
    """Export one network, verify it, move it into place; returns its ``export.json`` entry."""
    inputs, output = NETWORK_IO[stem]
    final = out_dir / f'{stem}{SUFFIXES[args.format]}'
    tmp = temporary_path(final)
    example = tuple(torch.rand(EXAMPLE_BATCH, 3, args.img_height, args.img_width) * 2 - 1 for _ in inputs)
    try:
        if args.format == 'onnx':
            export_onnx(net, tmp, example, inputs, output)
            exported = OnnxNetwork(tmp)
        else:
            export_torchscript(net, tmp, example)
            exported = load_torchscript(tmp)
        entry = {'file': final.name, 'inputs': list(inputs), 'output': output}
        for label, data in verification_inputs(stem, frames, args.img_height, args.img_width).items():
            difference = compare_outputs(net, exported, data)
            print(f"{final.name}: {label} inputs (batch {len(data[0])}): max |exported - PyTorch| = "
                  f"{difference.max_abs:.3g} ({difference.relative:.3g} of max |output| "
                  f"{difference.max_reference:.3g})")
            check_difference(final.name, difference)
            entry[f'max_abs_difference_{label}'] = difference.max_abs
            entry[f'relative_difference_{label}'] = difference.relative
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {final}")
    return entry


def run(args):
    """Export every requested network; returns the written ``export.json`` content."""
    check_arguments(args)
    out_dir = Path(args.output_dir)
    check_writable_folder(out_dir, '--output-dir')
    out_dir.mkdir(parents=True, exist_ok=True)
    networks = requested_networks(args)
    frames = real_frames(args)
    summary = {'format': args.format, 'image_height': args.img_height, 'image_width': args.img_width,
               'normalisation': 'RGB in [0,1], then (x - 0.5) / 0.5', 'batch_axis': 'dynamic', 'networks': {}}
    for stem, net, path in networks:
        print(f"=> exporting {type(net).__name__} from {path} to {args.format} "
              f"at {args.img_height}x{args.img_width}")
        summary['networks'][stem] = dict(export_network(stem, net, args, frames, out_dir), checkpoint=str(path))
    with atomic_open(out_dir / 'export.json') as handle:
        handle.write((json.dumps(summary, indent=2) + '\n').encode())
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (CheckpointError, ExportError, FileNotFoundError, OutputError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == '__main__':
    main()
