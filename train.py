"""Train Insta-DM: DispResNet, EgoPoseNet and ObjPoseNet with the two-stage, instance-aware projection.

    python train.py DATA --name NAME [flags]      (see scripts/train_resnet_256_kt.sh / _cs.sh)
    torchrun --nproc_per_node 2 train.py DATA --name NAME ...   (multi-process / multi-node)

Outputs go to checkpoints/NAME/TIMESTAMP/ (or the folder given to --resume).  The step itself
(ego pose -> first projection -> object motion -> motion field -> second projection -> losses)
is in projection.py.  This file is the command line; the parts of a run are small modules:
``train_loop`` (epochs, steps, validation), ``train_data`` (loaders), ``train_model`` (networks,
optimiser, the InstaDM module), ``train_checkpoints`` (run folder, checkpoint sets, resume),
``train_logs`` (CSV and TensorBoard), ``train_distributed`` (torchrun).
"""
import argparse
import os
import shutil
import sys

import host_memory
import precision
from checkpoint_io import CheckpointError
from checkpoint_set import read_manifest
from cli_types import float_in, int_at_least, odd_int_at_least
from datasets.io import DatasetError
from devices import select_device
from errors import one_line
from fileio import OutputError
from loss_terms import add_loss_weight_arguments
from train_checkpoints import make_run_folder
from train_distributed import Distributed
from train_loop import RunError, TrainingStopped, train

NON_NEGATIVE_INT = int_at_least(0)
POSITIVE_INT = int_at_least(1)
NON_NEGATIVE_FLOAT = float_in(0)
POSITIVE_FLOAT = float_in(0, include_low=False)
ADAM_BETA = float_in(0, 1, include_high=False)


def build_parser():
    parser = argparse.ArgumentParser(
        description='Learning Monocular Depth in Dynamic Scenes via Instance-Aware Projection Consistency',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('data', metavar='DIR', help='path to the KITTI-VIS / Cityscapes-VIS dataset')
    parser.add_argument('--with-gt', action='store_true', help='validate with ground-truth depth (.npy beside val frames)')
    parser.add_argument('--sequence-length', type=odd_int_at_least(3), default=3, metavar='N', help='frames per training sample')
    parser.add_argument('-mni', '--mni', type=NON_NEGATIVE_INT, default=20, help='maximum number of instances per frame (0 = rigid model)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default='euler', help='rotation parameterisation')
    parser.add_argument('--padding-mode', choices=['zeros', 'border'], default='zeros', help='padding of the warps')
    parser.add_argument('-j', '--workers', type=NON_NEGATIVE_INT, default=8, metavar='N', help='data loading workers')
    parser.add_argument('-b', '--batch-size', type=POSITIVE_INT, default=4, metavar='N', help='mini-batch size (per process)')
    parser.add_argument('--epochs', type=POSITIVE_INT, default=200, metavar='N', help='number of epochs')
    parser.add_argument('--epoch-size', type=NON_NEGATIVE_INT, default=0, metavar='N', help='iterations per epoch (0 = whole dataset)')
    parser.add_argument('--disp-lr', '--disp-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='DispResNet learning rate')
    parser.add_argument('--ego-lr', '--ego-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='EgoPoseNet learning rate')
    parser.add_argument('--obj-lr', '--obj-learning-rate', type=NON_NEGATIVE_FLOAT, default=1e-4, metavar='LR', help='ObjPoseNet learning rate')
    parser.add_argument('--momentum', type=ADAM_BETA, default=0.9, metavar='M', help='Adam beta1')
    parser.add_argument('--beta', type=ADAM_BETA, default=0.999, metavar='M', help='Adam beta2')
    parser.add_argument('--weight-decay', '--wd', type=NON_NEGATIVE_FLOAT, default=0, metavar='W', help='weight decay')
    parser.add_argument('--print-freq', type=NON_NEGATIVE_INT, default=10, metavar='N', help='iterations between printed loss lines')
    parser.add_argument('--save-freq', type=NON_NEGATIVE_INT, default=3, metavar='N', help='epochs between kept checkpoint copies')
    parser.add_argument('--image-freq', type=NON_NEGATIVE_INT, default=250, metavar='N', help='iterations between TensorBoard images')
    parser.add_argument('--resnet-layers', type=int, default=18, choices=[18, 50], help='ResNet depth of DispResNet')
    parser.add_argument('--with-pretrain', type=int, choices=[0, 1], default=1, help='ImageNet initialisation (1) or random (0)')
    parser.add_argument('--imagenet-weights', default=None, metavar='DIR',
                        help='folder with torchvision ResNet weights (default: the torch hub cache)')
    parser.add_argument('--pretrained-disp', default=None, metavar='PATH', help='DispResNet checkpoint to start from')
    parser.add_argument('--pretrained-ego-pose', default=None, metavar='PATH', help='EgoPoseNet checkpoint to start from')
    parser.add_argument('--pretrained-obj-pose', default=None, metavar='PATH', help='ObjPoseNet checkpoint to start from')
    parser.add_argument('--seed', type=NON_NEGATIVE_INT, default=0, help='seed of data order, augmentation and initialisation')
    parser.add_argument('--log-summary', default='progress_log_summary.csv', metavar='PATH', help='per-epoch CSV')
    parser.add_argument('--log-full', default='progress_log_full.csv', metavar='PATH', help='per-iteration CSV')
    add_loss_weight_arguments(parser)
    parser.add_argument('--with-auto-mask', action='store_true', help='mask stationary pixels')
    parser.add_argument('--with-ssim', action='store_true', help='add SSIM to the photometric loss')
    parser.add_argument('--with-mask', action='store_true', help='weight the photometric loss by 1 - geometry error')
    parser.add_argument('--with-only-obj', action='store_true', help='photometric/geometry losses on instance pixels only')
    parser.add_argument('--name', required=True, help='experiment name: outputs in checkpoints/NAME/TIMESTAMP')
    parser.add_argument('--debug-mode', action='store_true', help='a few iterations per epoch, outputs in checkpoints/debug')
    parser.add_argument('--no-shuffle', action='store_true', help='keep the sample order')
    parser.add_argument('--no-input-aug', action='store_true', help='no flip / scale-crop augmentation')
    parser.add_argument('--begin-idx', type=NON_NEGATIVE_INT, default=None, help='skip the training samples before this index')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='where to train')
    parser.add_argument('--resume', default=None, metavar='DIR', help='run folder to continue (networks, optimiser, counters)')
    parser.add_argument('--debug-viz', type=NON_NEGATIVE_INT, default=0, metavar='N',
                        help='save the BREAKPOINT-1/2 figures of the first N batches to RUN/debug_viz')
    parser.add_argument('--no-cache', action='store_true', help='recompute the instance association every time')
    parser.add_argument('--checkpoint-root', default='checkpoints', metavar='DIR',
                        help='outputs go to DIR/NAME/TIMESTAMP')
    parser.add_argument('--amp', choices=sorted(precision.AMP_DTYPES), default='off',
                        help='mixed precision of the networks (geometry and losses stay float32); bf16 on CPU and '
                             'GPU, fp16 on GPU with gradient scaling')
    parser.add_argument('--channels-last', action='store_true', help='channels-last memory layout for the networks')
    parser.add_argument('--compile', action='store_true', help='torch.compile the three networks')
    parser.add_argument('--lean-activations', choices=['on', 'off'], default='off',
                        help='CPU float32 training: keep the inputs of batch norm + ReLU and of reflection pads for '
                             'the backward pass and recompute what it reads (the same results, less memory, a '
                             'slightly slower step; models/lean_ops.py); off: PyTorch modules as they are')
    parser.add_argument('--depth-scale', type=POSITIVE_FLOAT, default=1.0, metavar='S',
                        help='depth = S / disparity inside the step (1: the official objective; an experiment '
                             'option of the ablation runner, see README "Science")')
    parser.add_argument('--antisymmetric-ego-pose', action='store_true',
                        help='ego pose = (f(view, source) - f(source, view)) / 2 from the two directed pairs (an '
                             'experiment option of the ablation runner, see README "Science"; off: the official '
                             'EgoPoseNet)')
    parser.add_argument('--mmap-threshold', type=float_in(0, host_memory.MAX_MMAP_THRESHOLD_MIB), default=0,
                        metavar='MIB',
                        help='CPU training: serve allocations of at least MIB MiB with mmap, so that freed '
                             'activations go back to the system (glibc): a lower peak resident memory for a slower '
                             'step, see README "Memory"; 0: the C library\'s default')
    parser.add_argument('--sync-bn', action='store_true',
                        help='under torchrun, synchronise BatchNorm statistics across processes (SyncBatchNorm)')
    return parser


def main(argv=None):
    """Train; bad input, unwritable outputs and unusable checkpoints end in one line ``error: ...`` (exit 1)."""
    args = build_parser().parse_args(argv)
    try:
        device = select_device(args.device, int(os.environ.get('LOCAL_RANK', '0')))
        run_dir = make_run_folder(args)
    except (ValueError, OutputError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.mmap_threshold and not host_memory.set_mmap_threshold(args.mmap_threshold):
        print("warning: --mmap-threshold needs glibc; the C library's default allocation stays", file=sys.stderr)
    dist_ctx = Distributed(device.type)
    try:
        train(args, device, dist_ctx, run_dir)
    except (DatasetError, CheckpointError, OutputError, FileNotFoundError, RunError, TrainingStopped,
            precision.CompileUnavailable, KeyboardInterrupt) as error:
        if not args.resume and dist_ctx.is_main and read_manifest(run_dir) is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        dist_ctx.close()
        if isinstance(error, TrainingStopped):
            print(error, file=sys.stderr)
            sys.exit(error.exit_code)
        if isinstance(error, KeyboardInterrupt):
            print(f"\ninterrupted: the last saved checkpoint of {run_dir} is intact", file=sys.stderr)
            sys.exit(130)
        raise SystemExit(f"error: {one_line(error)}") from None
    dist_ctx.close()
    if dist_ctx.is_main:
        print(f"=> done: checkpoints in {run_dir}; tensorboard --logdir {os.path.dirname(run_dir)}")
    return run_dir


if __name__ == '__main__':
    main()
