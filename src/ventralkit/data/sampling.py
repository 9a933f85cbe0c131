"""Deterministic, resumable data order and augmentation.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)``; each batch's random
augmentation is seeded from ``(seed, e, index of its first sample)``. Both are pure functions of where the run is, not
of how many workers ran or what happened before, so a run resumed at batch ``k`` of epoch ``e``
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFF


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs: this rank's share of epoch ``epoch``, from batch ``start``.

    With several ranks the indices are dealt round-robin. For training they are first padded to a
    multiple of the world size, as DistributedSampler does, so every rank runs the same number of
    steps; with ``pad=False`` (validation) the shards are uneven and together hold every sample once,
    so summed counts are exact.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1, pad: bool = True):
        self.n, self.shuffle, self.seed, self.pad = n, shuffle, seed, pad
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            if self.pad:
                total = -(-self.n // self.world_size) * self.world_size
                order += order[: total - self.n]
            order = order[self.rank::self.world_size]
        return order

    def __iter__(self):
        for i in self._indices()[self.start_batch * self.batch_size:]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        if self.world_size == 1:
            per_rank = self.n
        elif self.pad:
            per_rank = -(-self.n // self.world_size)
        else:
            per_rank = len(range(self.rank, self.n, self.world_size))
        return max(0, per_rank - self.start_batch * self.batch_size)


class SeededDataset(Dataset):
    """Wraps a dataset so each batch's augmentation is seeded from (seed, epoch, its first index).

    The DataLoader fetches a whole batch through ``__getitems__``; seeding once per batch (not per
    image) keeps the cost negligible, and a batch's content is fixed by the sampler, so the result is
    the same whichever worker loads it and whether or not the run was resumed.
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys):
        keys = [k if isinstance(k, tuple) else (0, k) for k in keys]
        s = _mix(self.seed, *keys[0])
        in_main = torch.utils.data.get_worker_info() is None
        if in_main:  # do not disturb the training process's own random streams (dropout etc.)
            saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s)
        try:
            return [self.dataset[i] for _, i in keys]
        finally:
            if in_main:
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])
