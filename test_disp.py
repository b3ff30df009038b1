"""Depth inference with DispResNet on a file list (the KITTI Eigen split by default).

    python test_disp.py --pretrained-dispnet CKPT --dataset-dir KITTI_RAW \
        --dataset-list kitti_eval/test_files_eigen.txt --output-dir OUT \
        [--img-height 256 --img-width 832 --resnet-layers 18 --batch-size 4 --device auto]
    python test_disp.py --onnx dispnet.onnx ...                    (the exported network, ONNX Runtime)
    python test_disp.py ... --scale-from camera-height [--camera-height 1.65 --scale-per sequence|image]

Writes ``OUT/predictions.npy`` (``[N,h,w]`` float32 depth at network resolution, list order).
When the ground truth is available (``--gt-file`` exists, or the raw velodyne scans and
calibration files are under ``--dataset-dir``) it also prints the metric table of the paper and
writes ``OUT/metrics.json`` and ``OUT/metrics.txt`` (see ``kitti_eval/eval_depth.py``).
With ``--scale-from camera-height`` the depth maps are made metric from the camera's height above
the fitted road plane (``ground_plane.py``) and evaluated without median scaling.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from checkpoint_io import CheckpointError
from devices import select_device, synchronize
from errors import one_line
from exported_models import ExportError, OnnxNetwork
from fileio import OutputError, atomic_open, check_writable_folder
from kitti_eval.eval_depth import CLI_ERRORS, DEFAULT_TEST_LIST, add_metric_options, evaluate_and_report
from kitti_eval.kitti_raw import check_frame_files, locate_frame, missing_file, read_file_list
from kitti_eval.metric_scale import add_scale_options, scale_to_metric
from models import ConfigError, depth_from_disparity, load_trained_networks, resolve_config
from network_input import ImageList, check_size_flags

def check_images(paths):
    """One-line FileNotFoundError for the first listed image that does not exist."""
    for path in paths:
        if not Path(path).is_file():
            raise missing_file(path, 'listed image')


def load_depth_network(args, device):
    """DispResNet from ``--pretrained-dispnet``, or the exported ``--onnx`` model run by ONNX Runtime.

    Returns:
        ``(network, models.ModelConfig)``: the ResNet depth and the input size are the flags given, else
        those saved in the checkpoint (a trained run's), else 18 and 256x832.
    """
    explicit = {'resnet_layers': args.resnet_layers, 'img_height': args.img_height, 'img_width': args.img_width}
    if args.onnx is None:
        nets, config = load_trained_networks({'disp': args.pretrained_dispnet}, explicit, device)
        return nets['disp'], config
    config, _ = resolve_config(None, explicit)
    net = OnnxNetwork(args.onnx)
    net.check_image_size(config.img_height, config.img_width)
    print(f"=> ONNX Runtime {net.session.get_providers()[0]} with {args.onnx}")
    return net, config


@torch.inference_mode()
def predict_depths(net, loader, device, progress=True):
    """Depth ``1/disp`` of every image of ``loader``: (``[N,h,w]`` float32, seconds spent in the network)."""
    depths, forward_seconds = [], 0.0
    bar = tqdm(total=len(loader.dataset), desc='inference', unit='img', disable=not progress)
    for images in loader:
        images = images.to(device)
        synchronize(device)
        start = time.perf_counter()
        disparity = net(images)
        synchronize(device)
        forward_seconds += time.perf_counter() - start
        depths.append(depth_from_disparity(disparity[:, 0]).float().cpu().numpy())
        bar.update(len(images))
    bar.close()
    return np.concatenate(depths), forward_seconds


def save_array(path, array):
    """``np.save`` atomically (never a half-written file)."""
    with atomic_open(path) as handle:
        np.save(handle, array)


def ground_truth_available(dataset_dir, files, gt_file):
    """True when the GT can be had: ``gt_file`` exists, or the raw data of every frame is there.

    False (with a notice) when no frame has its raw GT data; a one-line FileNotFoundError when
    only some frames have it (a broken download should not be evaluated on a subset silently).
    """
    if gt_file is not None and Path(gt_file).is_file():
        return True
    missing = []
    for entry in files:
        try:
            check_frame_files(locate_frame(dataset_dir, entry))
        except FileNotFoundError as exc:
            missing.append(exc)
    if not missing:
        return True
    if len(missing) == len(files):
        print(f"no ground truth to evaluate with ({missing[0]}): writing predictions only")
        return False
    raise missing[0]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    network = parser.add_mutually_exclusive_group(required=True)
    network.add_argument('--pretrained-dispnet', help='DispResNet checkpoint (.tar/.pth)')
    network.add_argument('--onnx', help='DispResNet exported by export.py, run with ONNX Runtime (CPU)')
    parser.add_argument('--dataset-dir', required=True, help='raw KITTI root: the list entries are relative to it')
    parser.add_argument('--dataset-list', default=str(DEFAULT_TEST_LIST),
                        help='file list (default: kitti_eval/test_files_eigen.txt)')
    parser.add_argument('--output-dir', default='outputs/eigen_test', help='where predictions.npy and metrics go')
    parser.add_argument('--img-height', type=int, default=None,
                        help='network input height (multiple of 32; default: the training frames\' height saved in '
                             'the checkpoint, else 256)')
    parser.add_argument('--img-width', type=int, default=None,
                        help='network input width (multiple of 32; default: saved in the checkpoint, else 832)')
    parser.add_argument('--resnet-layers', type=int, default=None, choices=[18, 50],
                        help='encoder depth (default: saved in the checkpoint, else 18)')
    parser.add_argument('--batch-size', type=int, default=4, help='images per forward pass')
    parser.add_argument('--workers', type=int, default=0, help='image loading processes (0 = main process)')
    parser.add_argument('--device', default='auto', help='auto (CUDA when available), cpu, cuda or cuda:N')
    parser.add_argument('--no-eval', dest='evaluate', action='store_false', help='write predictions only')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bars')
    add_metric_options(parser, lambda name: ['--' + name.replace('_', '-')])
    add_scale_options(parser)
    return parser


def check_arguments(args):
    """One-line ValueError for sizes the network cannot take (sizes not given are not checked)."""
    check_size_flags({'--img-height': args.img_height, '--img-width': args.img_width})
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")


def run(args):
    """Predict depth for every listed image, save it, and evaluate it when the GT is available."""
    check_arguments(args)
    check_writable_folder(args.output_dir, '--output-dir')
    device = select_device(args.device)
    files = read_file_list(args.dataset_list)
    image_paths = [Path(args.dataset_dir) / entry for entry in files]
    check_images(image_paths)
    evaluate = args.evaluate and ground_truth_available(args.dataset_dir, files, args.gt_file)
    net, config = load_depth_network(args, device)
    print(f"{len(files)} files to test on {device} at {config.img_height}x{config.img_width}")

    loader = DataLoader(ImageList(image_paths, config.img_height, config.img_width), batch_size=args.batch_size,
                        num_workers=args.workers, pin_memory=device.type == 'cuda')
    start = time.perf_counter()
    depths, forward_seconds = predict_depths(net, loader, device, args.progress)
    total_seconds = time.perf_counter() - start
    print(f"inference: {len(depths)} frames, {len(depths) / forward_seconds:.1f} frames/s in the network "
          f"({len(depths) / total_seconds:.1f} frames/s with image loading), batch size {args.batch_size}")
    if args.scale_from == 'camera-height':
        depths, scales = scale_to_metric(depths, files, args.dataset_dir, args.camera_height, args.scale_per)
        save_array(Path(args.output_dir) / 'camera_height_scales.npy', scales)
        args.median_scaling = False
    predictions_path = Path(args.output_dir) / 'predictions.npy'
    save_array(predictions_path, depths)
    print(f"wrote {predictions_path} {list(depths.shape)}")

    if evaluate:
        evaluate_and_report(depths, files, args.dataset_dir, args.gt_file, args.min_depth, args.max_depth,
                            args.median_scaling, args.velodyne_depth, args.output_dir, args.progress)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (CheckpointError, ConfigError, ExportError, OutputError, *CLI_ERRORS) as exc:
        sys.exit(f"error: {one_line(exc)}")


if __name__ == '__main__':
    main()
