"""The training sample order as a function of ``(seed, epoch)``, so a resumed run sees the same batches."""
import math

import torch
import torch.utils.data


class EpochSampler(torch.utils.data.Sampler):
    """Indices of one epoch: a permutation drawn from ``seed + epoch`` (as ``DistributedSampler``),
    this process's share of it, its first ``num_samples``, from position ``start`` on.

    Args:
        size: number of samples of the dataset.
        seed: seed of the permutations.
        shuffle: ``False`` keeps the dataset order.
        num_replicas, rank: processes of a distributed run and this one's rank (the permutation is
            padded by repeating its start to a multiple of ``num_replicas``, as ``DistributedSampler``).
        num_samples: indices per epoch and process (``--epoch-size x --batch-size``); ``None`` = all.

    ``set_epoch(epoch, start)`` selects the epoch and skips its first ``start`` indices (a resume in
    the middle of an epoch).  Nothing beyond ``num_samples`` is ever yielded, so a DataLoader never
    loads a batch past the end of the epoch.
    """

    def __init__(self, size, seed, shuffle=True, num_replicas=1, rank=0, num_samples=None):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        share = math.ceil(size / num_replicas)
        self.num_samples = share if num_samples is None else min(num_samples, share)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch, start=0):
        self.epoch = epoch
        self.start = start

    def epoch_indices(self):
        """Every index of this process in the current epoch (``start`` ignored): a list of ints."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = math.ceil(self.size / self.num_replicas) * self.num_replicas
        order += order[:padded - self.size]
        return order[self.rank::self.num_replicas][:self.num_samples]

    def __iter__(self):
        return iter(self.epoch_indices()[self.start:])

    def __len__(self):
        return max(self.num_samples - self.start, 0)
