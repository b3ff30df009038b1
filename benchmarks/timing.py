"""Timing helper shared by the benchmark scripts."""
import statistics
import time

import torch


def median_seconds(fn, repeats, device):
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up (CUDA work included)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
