"""The benchmarks' synthetic training batch and resident-memory reader (torch only: the official-step
harness imports them next to the official code, whose module names clash with ours)."""
import os

import torch


def make_batch(batch, height, width, mni, num_refs=2, seed=0, counts=None):
    """Smooth random frames and non-overlapping rectangular instances.

    Sample ``b`` holds ``counts[b % len(counts)]`` instances in every frame (default: ``mni``).
    """
    generator = torch.Generator().manual_seed(seed)
    counts = counts or [mni]

    def frame():
        coarse = torch.rand(batch, 3, height // 8, width // 8, generator=generator) * 2 - 1
        return torch.nn.functional.interpolate(coarse, size=(height, width), mode='bilinear', align_corners=False)

    def instances(shift):
        insts = torch.zeros(batch, 1 + mni, height, width)
        box_w = max(width // (mni + 1) - 4, 4)
        for b in range(batch):
            count = counts[b % len(counts)]
            insts[b, 0] = count
            for k in range(count):
                left = 2 + k * (box_w + 4) + shift
                insts[b, 1 + k, height // 3:height // 3 + height // 4, left:left + box_w] = 1
        return insts

    K = torch.tensor([[0.58 * width, 0, width / 2], [0, 1.92 * height, height / 2], [0, 0, 1]]).expand(batch, 3, 3)
    return (frame(), [frame() for _ in range(num_refs)], K.clone(),
            [instances(0) for _ in range(num_refs)], [instances(2) for _ in range(num_refs)])


def resident_mib():
    """Current resident memory of this process (MiB)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
