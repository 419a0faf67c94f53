"""The training data stream: a pure function of (seed, iteration), so a resumed run reads what an
uninterrupted one would, whatever the number of loader workers."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from yolact.data import collate

from .distributed import DistContext


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global RNGs for a block, restoring their states after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SeededSamples(Dataset):
    """``dataset[index]`` under RNGs seeded from (seed, epoch, index): key it with ``(epoch, index)``.

    Each sample's random augmentation thus depends on nothing else: not on the worker that loads it, nor
    on what was loaded before.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with seeded_rngs(sample_seed):
            return self.dataset[index]


class EpochKeys:
    """The endless sampler of :class:`TrainStream`: ``(epoch, index)`` keys, epoch after epoch, starting at
    the sample of batch ``start`` (counted over the whole run)."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, batches_per_epoch: int, start: int):
        self.sampler = sampler
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = divmod(self.start, self.batches_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            for index in list(self.sampler)[skip * self.batch_size : self.batches_per_epoch * self.batch_size]:
                yield epoch, index
            epoch, skip = epoch + 1, 0


class TrainStream:
    """Batches for iterations ``start, start + 1, ...``: iteration i is batch i mod E of epoch i div E, E
    being the full batches per epoch of this rank's share (DistributedSampler) of the shuffled images.

    One loader serves every epoch, so its worker processes start once per run, not once per epoch.
    """

    def __init__(self, dataset: Dataset, batch_size: int, ctx: DistContext, seed: int, workers: int, pin_memory: bool):
        self.samples = SeededSamples(dataset, seed)
        self.sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=seed)
        self.batch_size = batch_size
        self.seed = seed
        self.workers = workers
        self.pin_memory = pin_memory
        self.batches_per_epoch = len(self.sampler) // batch_size

    def batches(self, start: int) -> Iterator[tuple[torch.Tensor, list[dict]]]:
        loader = DataLoader(
            self.samples,
            batch_size=self.batch_size,
            sampler=EpochKeys(self.sampler, self.batch_size, self.batches_per_epoch, start),
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            # A private generator: creating the loader must not advance the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)
