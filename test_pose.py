"""Ego-motion evaluation of EgoPoseNet on KITTI odometry sequences (full trajectory and snippet ATE).

    python test_pose.py --pretrained-ego-pose CKPT --dataset-dir KITTI_ODOMETRY --sequences 09 10 \
        --output-dir OUT [--img-height 256 --img-width 832 --sequence-length 5 --rotation-mode euler \
         --align 7dof --batch-size 8 --device auto]

For every sequence (``DATASET/sequences/NN/image_2``) EgoPoseNet predicts the pose of every pair of
consecutive frames.  Direction, as in the training step: ``EgoPoseNet(img_k, img_k+1)`` is the pose
"target -> reference" with target ``k`` and reference ``k+1``, mapping camera-k points into camera
k+1 (``X_k+1 = R X_k + t``); the trajectory is chained as ``cam_to_world[k+1] = cam_to_world[k] @
inv(T_k->k+1)`` with frame 0 as the world.  The networks see whole frames (training shows EgoPoseNet
background-only frames; KITTI odometry has no instance masks).  A network trained with
``--antisymmetric-ego-pose`` (its saved ``ModelConfig``) is evaluated as trained: ``(f(k, k+1) - f(k+1, k)) / 2``.

Writes ``OUT/NN/NN.txt`` (the predicted trajectory, KITTI format, at the network's scale) and, when
ground truth exists (``DATASET/poses/NN.txt``, else ``kitti_eval/odometry_gt/NN.txt``, which holds
09 and 10):
* the full-trajectory metrics of ``kitti_eval/eval_odometry.py`` (``t_err``, ``r_err``, ATE, RPE after
  ``--align``): ``OUT/NN/odometry_metrics.json``, ``trajectory.png``, ``aligned_poses.txt``;
* the snippet ATE of SfMLearner / Monodepth2 (snippets of ``--sequence-length`` frames, one
  least-squares scale each): mean and std in ``OUT/NN/snippet_ate.json``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from checkpoint_io import CheckpointError
from demo_odometry import pose_vectors_to_matrices
from devices import select_device, synchronize
from fileio import OutputError, atomic_open, check_writable_folder
from kitti_eval.eval_odometry import CLI_ERRORS, evaluate_trajectory
from kitti_eval.kitti_odometry import PoseFileError, ground_truth_path, read_poses, sequence_frames, write_poses
from kitti_eval.odometry_metrics import ALIGNMENTS, chain_poses, snippet_ate
from models import ConfigError, load_trained_networks
from network_input import ImageList, check_size_flags

SNIPPET_FILE = 'snippet_ate.json'


def load_ego_pose_net(args, device):
    """EgoPoseNet with the weights of ``--pretrained-ego-pose`` (official checkpoints included), in eval mode.

    Returns:
        ``(network, models.ModelConfig)``: the rotation mode and input size are the flags given, else those
        saved in the checkpoint, else euler and 256x832.
    """
    explicit = {'rotation_mode': args.rotation_mode, 'img_height': args.img_height, 'img_width': args.img_width}
    nets, config = load_trained_networks({'ego': args.pretrained_ego_pose}, explicit, device)
    return nets['ego'], config


@torch.inference_mode()
def predict_frame_to_frame(net, loader, device, progress=True, antisymmetric=False):
    """Pose vectors ``k -> k+1`` of every consecutive pair of the loader's frames; ``antisymmetric`` (a network
    trained with ``--antisymmetric-ego-pose``) gives ``(f(k, k+1) - f(k+1, k)) / 2``, the pose that training used.

    Returns:
        ``([F-1,6]`` float64 pose vectors, seconds spent in the network).
    """
    vectors, seconds, previous = [], 0.0, None
    bar = tqdm(total=len(loader.dataset), desc='ego-motion', unit='frame', disable=not progress)
    for images in loader:
        images = images.to(device)
        frames = images if previous is None else torch.cat([previous, images])
        synchronize(device)
        start = time.perf_counter()
        poses = net(frames[:-1], frames[1:])
        if antisymmetric:
            poses = 0.5 * (poses - net(frames[1:], frames[:-1]))
        vectors.append(poses.double().cpu().numpy())
        synchronize(device)
        seconds += time.perf_counter() - start
        previous = frames[-1:]
        bar.update(len(images))
    bar.close()
    return np.concatenate(vectors), seconds


def load_ground_truth(dataset_dir, sequence, num_frames):
    """``([F,4,4]`` GT poses, path) of a sequence, or ``(None, None)`` when there is none."""
    path = ground_truth_path(dataset_dir, sequence)
    if path is None:
        return None, None
    gt = read_poses(path)
    if len(gt) != num_frames:
        raise PoseFileError(f"{path}: {len(gt)} poses, but sequence {sequence} has {num_frames} frames")
    return gt, path


def snippet_report(gt, pred, snippet_length):
    """Snippet ATE statistics as a dict (``mean``, ``std`` in metres, ``snippet_length``, ``snippets``)."""
    errors = snippet_ate(gt, pred, snippet_length)
    return {'mean': float(errors.mean()), 'std': float(errors.std()), 'snippet_length': snippet_length,
            'snippets': len(errors)}


def write_json(path, data):
    with atomic_open(path) as handle:
        handle.write((json.dumps(data, indent=2) + '\n').encode())


def predict_trajectory(net, config, frames, args, device):
    """``([F,4,4]`` chained camera-to-world poses of ``frames``, network speed in pairs/s).

    ``config``: the :class:`models.ModelConfig` of the network (input size, rotation mode, antisymmetric ego pose).
    """
    loader = DataLoader(ImageList(frames, config.img_height, config.img_width), batch_size=args.batch_size,
                        num_workers=args.workers, pin_memory=device.type == 'cuda')
    vectors, seconds = predict_frame_to_frame(net, loader, device, args.progress, config.antisymmetric_ego_pose)
    return chain_poses(pose_vectors_to_matrices(vectors, config.rotation_mode)), len(vectors) / seconds


def evaluate_snippets(gt, pred, snippet_length, sequence, out):
    """Snippet ATE of one sequence: printed, saved to ``out/snippet_ate.json``; ``{}`` when too short."""
    if len(gt) < snippet_length:
        print(f"sequence {sequence}: fewer frames than --sequence-length {snippet_length}: no snippet ATE")
        return {}
    snippets = snippet_report(gt, pred, snippet_length)
    write_json(out / SNIPPET_FILE, snippets)
    print(f"snippet ATE ({snippet_length} frames, {snippets['snippets']} snippets): "
          f"{snippets['mean']:.4f} +- {snippets['std']:.4f} m")
    return {'snippet_ate': snippets['mean'], 'snippet_ate_std': snippets['std']}


def evaluate_sequence(net, config, args, sequence, device):
    """Predict, save and (with GT) evaluate one sequence; returns a summary dict."""
    frames = sequence_frames(args.dataset_dir, sequence)
    gt, gt_path = load_ground_truth(args.dataset_dir, sequence, len(frames))
    pred, speed = predict_trajectory(net, config, frames, args, device)
    out = Path(args.output_dir) / sequence
    write_poses(out / f'{sequence}.txt', pred)
    print(f"sequence {sequence}: {len(frames)} frames, {speed:.1f} pairs/s in the network; "
          f"wrote {out / f'{sequence}.txt'}")
    if gt is None:
        print(f"sequence {sequence}: no ground truth (neither {Path(args.dataset_dir) / 'poses'} nor "
              f"kitti_eval/odometry_gt/ has {sequence}.txt): prediction only")
        return {'sequence': sequence}
    errors = evaluate_trajectory(gt, pred, args.align, f"sequence {sequence} ({gt_path})", out)
    snippets = evaluate_snippets(gt, pred, args.sequence_length, sequence, out)
    return {'sequence': sequence, **errors.as_dict(), **snippets}


def format_summary(rows):
    """One line per evaluated sequence (sequences without GT are left out)."""
    def show(row, key, width):
        value = row.get(key)
        return f"{'n/a':>{width}}" if value is None else f"{value:{width}.4f}"
    lines = [f"{'seq':>4} {'t_err (%)':>10} {'r_err (deg/100m)':>17} {'ATE (m)':>9} {'RPE trans (m)':>14} "
             f"{'RPE rot (deg)':>14} {'snippet ATE (m)':>22}"]
    for row in rows:
        if 'ate' not in row:
            continue
        snippet = ('n/a' if 'snippet_ate' not in row else
                   f"{row['snippet_ate']:.4f} +- {row['snippet_ate_std']:.4f}")
        lines.append(f"{row['sequence']:>4} {show(row, 't_err', 10)} {show(row, 'r_err', 17)} "
                     f"{show(row, 'ate', 9)} {show(row, 'rpe_trans', 14)} {show(row, 'rpe_rot', 14)} {snippet:>22}")
    return '\n'.join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pretrained-ego-pose', required=True, help='EgoPoseNet checkpoint (.tar/.pth)')
    parser.add_argument('--dataset-dir', required=True,
                        help='KITTI odometry root (holds sequences/NN/image_2 and, optionally, poses/NN.txt)')
    parser.add_argument('--sequences', nargs='+', default=['09', '10'], help='sequences to test (default 09 10)')
    parser.add_argument('--output-dir', default='outputs/pose_test', help='where trajectories and metrics go')
    parser.add_argument('--img-height', type=int, default=None,
                        help='network input height (multiple of 32; default: saved in the checkpoint, else 256)')
    parser.add_argument('--img-width', type=int, default=None,
                        help='network input width (multiple of 32; default: saved in the checkpoint, else 832)')
    parser.add_argument('--sequence-length', type=int, default=5,
                        help='frames per snippet of the snippet ATE (3 or 5 as published; default %(default)s)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default=None,
                        help='rotation parameterisation the network was trained with (default: saved in the '
                             'checkpoint, else euler)')
    parser.add_argument('--align', default='7dof', choices=ALIGNMENTS,
                        help='alignment of the full trajectory to the GT (default %(default)s)')
    parser.add_argument('--batch-size', type=int, default=8, help='frame pairs per forward pass')
    parser.add_argument('--workers', type=int, default=0, help='image loading processes (0 = main process)')
    parser.add_argument('--device', default='auto', help='auto (CUDA when available), cpu, cuda or cuda:N')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bars')
    return parser


def run(args):
    """Evaluate every requested sequence; returns the summaries."""
    check_size_flags({'--img-height': args.img_height, '--img-width': args.img_width})
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.sequence_length < 2:
        raise ValueError(f"--sequence-length {args.sequence_length}: must be at least 2")
    check_writable_folder(args.output_dir, '--output-dir')
    for sequence in args.sequences:
        sequence_frames(args.dataset_dir, sequence)
    device = select_device(args.device)
    net, config = load_ego_pose_net(args, device)
    rows = [evaluate_sequence(net, config, args, sequence, device) for sequence in args.sequences]
    if any('ate' in row for row in rows):
        print(format_summary(rows))
    return rows


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (CheckpointError, ConfigError, OutputError, *CLI_ERRORS) as exc:
        sys.exit(f"error: {exc}")


if __name__ == '__main__':
    main()
