"""The epoch sampler: which samples each process sees in each epoch.

The order of an epoch is a pure function of ``(seed, epoch)``, so a resumed run replays the
interrupted epoch exactly. It serves three cases with one mechanism:

- plain shuffling of one data set;
- weighted mixing of several data sets (the samples of set ``i`` are drawn with
  probability proportional to ``weights[i]``, with replacement only where a set is
  smaller than its share);
- sharding across torchrun processes (each rank takes every ``world``-th index of the
  same permutation, padded so all ranks do the same number of steps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Deterministic, resumable, optionally weighted and sharded sampler.

    Args:
        sizes: Number of samples of each concatenated data set (ConcatDataset order).
        weights: Sampling weight of each set; ``None`` gives every sample one draw.
        epoch_size: Samples per epoch over all ranks; default: the first set's size when
            weighted, else the total.
        seed: Base seed.
        shuffle: Shuffle (training) or keep the order (evaluation).
        rank: This process's rank.
        world: Number of processes.
    """

    def __init__(self, sizes: Sequence[int], *, weights: Sequence[float] | None = None,
                 epoch_size: int | None = None, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world: int = 1) -> None:
        self.sizes = [int(s) for s in sizes]
        if weights is not None and len(weights) != len(self.sizes):
            raise ValueError(f"{len(weights)} weights for {len(self.sizes)} data sets")
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"sampling weights must be >= 0 with a positive sum, got {weights}")
        self.weights = list(weights) if weights is not None else None
        total = sum(self.sizes)
        self.epoch_size = int(epoch_size or (self.sizes[0] if self.weights and len(self.sizes) > 1 else total))
        self.seed, self.shuffle, self.rank, self.world = seed, shuffle, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of the current epoch (before sharding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        offsets = np.cumsum([0, *self.sizes[:-1]])
        if self.weights is None or len(self.sizes) == 1:
            idx = np.arange(sum(self.sizes))
            return rng.permutation(idx) if self.shuffle else idx
        w = np.asarray(self.weights, dtype=np.float64)
        share = w / w.sum()
        counts = np.floor(share * self.epoch_size).astype(int)
        counts[np.argmax(share)] += self.epoch_size - counts.sum()
        parts = []
        for size, off, n in zip(self.sizes, offsets, counts, strict=True):
            if n == 0 or size == 0:
                continue
            reps, rest = divmod(int(n), size)
            draws = [rng.permutation(size) for _ in range(reps)]
            draws.append(rng.permutation(size)[:rest])
            parts.append(off + np.concatenate(draws))
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
        return rng.permutation(idx) if self.shuffle else np.sort(idx)

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        if self.world > 1:
            per_rank = -(-len(idx) // self.world)
            pad = per_rank * self.world - len(idx)
            if pad:
                idx = np.concatenate([idx, idx[:pad]])
            idx = idx[self.rank::self.world]
        return iter(idx.tolist())

    def __len__(self) -> int:
        n = self.epoch_size if self.weights and len(self.sizes) > 1 else sum(self.sizes)
        return -(-n // self.world)
