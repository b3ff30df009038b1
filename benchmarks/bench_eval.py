"""Speed of the evaluation path: DispResNet inference and metrics from a cached ground-truth file.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_eval [--device cpu] [--batch-sizes 1 8] [--frames 697] [--no-onnx]

Prints (1) DispResNet-18 frames per second at 256x832 for each batch size (random weights and
images; the network cost does not depend on them), in PyTorch and, for the same network exported
by ``export.py``'s ONNX path, in ONNX Runtime (CPU, as many threads as torch), with the CPU
capability PyTorch dispatches to, and (2) the time to load a cached GT file of ``--frames``
KITTI-sized (375x1242) sparse maps and evaluate ``[N,256,832]`` predictions against it.
"""
import argparse
import tempfile
import time
from pathlib import Path


import numpy as np
import onnxruntime
import torch

from devices import select_device, synchronize
from exported_models import OnnxNetwork, export_onnx
from kitti_eval.eval_depth import evaluate_depths
from kitti_eval.gt_cache import load_gt_depths, save_gt_depths
from models import ModelConfig, build_network

KITTI_SHAPE = (375, 1242)
LIDAR_DENSITY = 0.045  # fraction of KITTI pixels with a velodyne point (~21k per frame)


@torch.inference_mode()
def inference_fps(net, batch_size, height, width, iterations, device):
    """Frames per second of ``net`` on random ``[batch,3,H,W]`` input (after one warm-up pass)."""
    images = torch.rand(batch_size, 3, height, width, device=device) * 2 - 1
    net(images)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        net(images)
    synchronize(device)
    return batch_size * iterations / (time.perf_counter() - start)


def onnx_runtime_fps(net, batch_sizes, height, width, iterations, device):
    """``{batch size: frames/s}`` of ``net`` exported to ONNX and run by ONNX Runtime on the CPU."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / 'dispnet.onnx'
        export_onnx(net.cpu(), path, (torch.rand(2, 3, height, width) * 2 - 1,), ['image'], 'disparity')
        net.to(device)
        session = OnnxNetwork(path, threads=torch.get_num_threads())
        return {batch: inference_fps(session, batch, height, width, iterations, torch.device('cpu'))
                for batch in batch_sizes}


def synthetic_gt(frames, seed=0):
    """``frames`` KITTI-sized sparse GT maps (lower 2/3 of the image, like the lidar's field of view)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(frames):
        depth_map = np.zeros(KITTI_SHAPE, np.float32)
        rows = rng.integers(KITTI_SHAPE[0] // 3, KITTI_SHAPE[0], int(LIDAR_DENSITY * np.prod(KITTI_SHAPE)))
        cols = rng.integers(0, KITTI_SHAPE[1], rows.size)
        depth_map[rows, cols] = rng.uniform(2, 90, rows.size)
        maps.append(depth_map)
    return maps


def bench_evaluation(frames, height, width):
    """Seconds to (load the cached GT, evaluate) for ``frames`` images; size of the GT file in MB."""
    files = [f'2011_09_26/drive/image_02/data/{i:010d}.png' for i in range(frames)]
    predictions = np.random.default_rng(1).uniform(1, 80, (frames, height, width)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        gt_file = Path(folder) / 'gt.npz'
        save_gt_depths(gt_file, files, synthetic_gt(frames))
        size_mb = gt_file.stat().st_size / 1e6
        start = time.perf_counter()
        gt_maps = load_gt_depths(gt_file, files)
        loaded = time.perf_counter()
        evaluate_depths(gt_maps, predictions, files, progress=False)
        evaluated = time.perf_counter()
    return loaded - start, evaluated - loaded, size_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--iterations', type=int, default=3, help='timed forward passes per batch size')
    parser.add_argument('--img-height', type=int, default=256)
    parser.add_argument('--img-width', type=int, default=832)
    parser.add_argument('--frames', type=int, default=697, help='frames of the evaluation benchmark (0 = skip)')
    parser.add_argument('--no-onnx', dest='onnx', action='store_false', help='skip the ONNX Runtime comparison')
    args = parser.parse_args()

    device = select_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    net = build_network('disp', ModelConfig(resnet_layers=18)).to(device).eval()
    for batch_size in args.batch_sizes:
        fps = inference_fps(net, batch_size, args.img_height, args.img_width, args.iterations, device)
        print(f"DispResNet-18 {args.img_height}x{args.img_width} batch {batch_size}: {fps:.2f} frames/s (PyTorch)")
    if args.onnx:
        for batch_size, fps in onnx_runtime_fps(net, args.batch_sizes, args.img_height, args.img_width,
                                                args.iterations, device).items():
            print(f"DispResNet-18 {args.img_height}x{args.img_width} batch {batch_size}: {fps:.2f} frames/s "
                  f"(ONNX Runtime {onnxruntime.__version__}, CPU)")
    if args.frames:
        load_s, eval_s, size_mb = bench_evaluation(args.frames, args.img_height, args.img_width)
        print(f"evaluation of {args.frames} frames from a cached GT file ({size_mb:.1f} MB): "
              f"load {load_s:.2f} s, metrics {eval_s:.2f} s, total {load_s + eval_s:.2f} s")


if __name__ == '__main__':
    main()
