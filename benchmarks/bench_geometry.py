"""Time inverse_warp_mof and forward_warp (forward + backward) at 256x832, batch 4.

Usage: python -m benchmarks.bench_geometry [--height 256 --width 832 --batch 4 --repeats 5 --device cpu]
Prints the median seconds per call and the peak resident memory of the process.
"""
import argparse
import resource

import torch

from benchmarks.timing import median_seconds
from inverse_warp import forward_warp, inverse_warp_mof
from motion_field import MotionField


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=832)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    b, h, w = args.batch, args.height, args.width
    K = torch.tensor([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]], device=device).expand(b, 3, 3)
    img = torch.rand(b, 3, h, w, device=device)
    depth = (torch.rand(b, 1, h, w, device=device) * 20 + 5).requires_grad_()
    pose = torch.tensor([[0.02, 0.01, 0.8, 0.001, 0.01, 0.002]], device=device).repeat(b, 1).requires_grad_()
    masks = (torch.rand(b, 3, h, w, device=device) > 0.7).float()

    def mof_step():
        field = MotionField.with_objects(pose, torch.cat([masks[:, :1] * 0.1, torch.zeros(b, 2, h, w, device=device)], 1))
        projected, valid, projected_depth, computed_depth, _ = inverse_warp_mof(img, depth, depth, field, K)
        loss = ((projected - img).abs() * valid).mean() + ((projected_depth - computed_depth).abs() * valid).mean()
        loss.backward()

    def forward_warp_step():
        with torch.no_grad():
            forward_warp(torch.cat([img, masks], 1), depth, pose, K)

    def forward_warp_grad_step():
        img_w, depth_w, valid = forward_warp(img.requires_grad_(), depth, pose, K)
        (img_w.mean() + depth_w.mean()).backward()

    print(f"device {device}, threads {torch.get_num_threads()}, batch {b}, {h}x{w}")
    print(f"inverse_warp_mof forward+backward: {median_seconds(mof_step, args.repeats, device):.3f} s")
    print(f"forward_warp (image+3 masks, no grad, as in training): {median_seconds(forward_warp_step, args.repeats, device):.3f} s")
    print(f"forward_warp forward+backward: {median_seconds(forward_warp_grad_step, args.repeats, device):.3f} s")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == '__main__':
    main()
