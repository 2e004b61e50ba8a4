"""A stream of training batches that continues across epochs and from a saved point."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

from surrogates.data import ChunkSampler, make_loader

log = logging.getLogger(__name__)


class BatchStream:
    """Batches of a dataset in a seeded order per epoch, one at a time.

    The position ``(epoch, batch_in_epoch)`` counts the batches taken so far, so a
    stream set to a saved position yields exactly the batches that a run without
    the interruption would have seen next. The order of epoch ``e`` depends only on
    ``seed`` and ``e``: a :class:`~surrogates.data.ChunkSampler`, which shuffles
    across chunks but keeps the samples of a compressed chunk close together, so
    that each chunk is decompressed about once per epoch. Each epoch's loader seeds
    its workers from its own generator with ``seed + e``. Incomplete last batches
    are dropped.

    Parameters
    ----------
    dataset
        Samples of dicts of tensors.
    batch_size
        Samples per batch.
    seed
        Seed of the shuffled orders.
    num_workers
        Loader worker processes; 0 reads in the main process.
    pin_memory
        Whether batches go to page-locked memory (for CUDA).

    Raises
    ------
    ValueError
        If ``batch_size`` exceeds the number of samples.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.sampler = ChunkSampler.for_dataset(
            dataset, seed=seed, batch_size=batch_size, num_workers=num_workers
        )
        self.steps_per_epoch = len(dataset) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {len(dataset)} training "
                "samples; lower batch_size or add trajectories"
            )
        self.epoch = 0
        self.batch_in_epoch = 0
        self._iterator = None

    def set_position(self, epoch: int, batch_in_epoch: int) -> None:
        """Continue with batch ``batch_in_epoch`` of epoch ``epoch``."""
        self.close()
        self.epoch = epoch
        self.batch_in_epoch = batch_in_epoch
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0

    def next(self) -> dict[str, torch.Tensor]:
        """Return the next batch and advance the position.

        The position moves to the next epoch after the last full batch of this one.
        """
        if self._iterator is None:
            self._iterator = iter(self._loader())
        batch = next(self._iterator)
        self.batch_in_epoch += 1
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.close()
            self.epoch += 1
            self.batch_in_epoch = 0
        return batch

    def _loader(self):
        self.sampler.set_position(self.epoch, self.batch_in_epoch * self.batch_size)
        log.debug("loader at epoch %d, batch %d", self.epoch, self.batch_in_epoch)
        return make_loader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory,
            seed=self.seed + self.epoch,
        )

    def close(self) -> None:
        """Drop the current loader iterator, which stops its worker processes."""
        self._iterator = None
