"""A chunk-aware epoch order: each compressed chunk is decompressed once per epoch.

A plain shuffled order reads the samples of one chunk at scattered positions of the
epoch, so when a chunk contains many samples it is decompressed again for almost
every one of them. :class:`ChunkSampler` keeps the samples of a chunk close together
in the order, yet mixes a few chunks at a time so that a batch draws from several
chunks, trajectories and times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import h5py
import numpy as np
from torch.utils.data import Sampler

from surrogates.data.files import open_hdf5
from surrogates.data.layout import TIME, TRAJECTORY


class ChunkSampler(Sampler[int]):
    """Seeded, resumable epoch order that visits the samples chunk group by group.

    Each epoch permutes the groups, takes them ``n_interleave`` at a time, and
    shuffles the samples of those groups together. With a chunk cache that has room
    for the chunks of ``n_interleave`` samples (as
    :meth:`~surrogates.data.HDF5Source.plan_reads` sizes it), each chunk is then
    decompressed once per epoch. The exceptions are chunks that a sample's time
    window shares with the next group along time, which can be decompressed a
    second time.

    The interface is that of :class:`~surrogates.data.EpochSampler`: the order of
    epoch ``e`` depends only on ``seed`` and ``e``, ``set_position(e, start)``
    skips the first ``start`` indices of this rank's share, and every sample is in
    exactly one rank's share. Shares are contiguous pieces of one epoch order, so
    a chunk group is read by one rank, and share sizes differ by at most one.

    Parameters
    ----------
    groups
        Sample indices per chunk group, as :func:`chunk_groups` returns.
    seed
        Seed of the orders; epoch ``e`` uses ``(seed, e)``.
    shuffle
        Whether to permute at all; ``False`` gives the groups in order.
    rank, world_size
        This process's rank and the number of ranks.
    n_interleave
        Groups whose samples are shuffled together.
    batch_size, num_workers
        With ``num_workers > 1``, the share is split into one contiguous piece
        per DataLoader worker and dealt out batch by batch, so that worker ``w``,
        which loads batches ``w, w + num_workers, ...``, reads the chunks of its
        own piece only. ``batch_size`` must then equal the loader's.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        n_interleave: int = 4,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank={rank} and world_size={world_size} must satisfy "
                "0 <= rank < world_size"
            )
        for name, value in (("n_interleave", n_interleave), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1")
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
        self.n_samples = sum(len(g) for g in self.groups)
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.n_interleave = n_interleave
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.epoch = 0
        self.start = 0
        self._cached: tuple[int, np.ndarray] | None = None

    @classmethod
    def for_dataset(cls, dataset, **kwargs) -> ChunkSampler:
        """Build a sampler over the chunk groups of a :class:`StepDataset`."""
        return cls(chunk_groups(dataset), **kwargs)

    def set_position(self, epoch: int, start: int) -> None:
        """Continue at index ``start`` of this rank's share of epoch ``epoch``."""
        self.epoch = epoch
        self.start = start

    def epoch_order(self) -> np.ndarray:
        """Return this rank's whole share of the current epoch's order.

        Iteration skips its first ``start`` indices, as set by :meth:`set_position`.
        """
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._share())
        return self._cached[1]

    def _share(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = self.groups
        if self.shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        blocks = [np.zeros(0, dtype=np.int64)]
        for first in range(0, len(groups), self.n_interleave):
            block = np.concatenate(groups[first : first + self.n_interleave])
            blocks.append(rng.permutation(block) if self.shuffle else block)
        share = np.array_split(np.concatenate(blocks), self.world_size)[self.rank]
        if self.num_workers > 1:
            share = deal_batches(share, self.num_workers, self.batch_size)
        return share

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.start :].tolist())

    def __len__(self) -> int:
        return max(len(self.epoch_order()) - self.start, 0)


def deal_batches(order: np.ndarray, n_workers: int, batch_size: int) -> np.ndarray:
    """Reorder so that batch ``b`` comes from piece ``b % n_workers`` of ``order``.

    ``order`` is cut into ``n_workers`` contiguous pieces. Their full batches are
    dealt round-robin while every piece has one left, and the rest follows in
    piece order, so the result is a permutation of ``order``.
    """
    pieces = np.array_split(order, n_workers)
    n_rounds = min(len(p) for p in pieces) // batch_size
    dealt = [
        piece[j * batch_size : (j + 1) * batch_size]
        for j in range(n_rounds)
        for piece in pieces
    ]
    rest = [piece[n_rounds * batch_size :] for piece in pieces]
    return np.concatenate([np.zeros(0, dtype=order.dtype), *dealt, *rest])


def chunk_groups(dataset) -> list[list[int]]:
    """Group the samples of a :class:`StepDataset` by the chunk their read starts in.

    The chunk is that of the first input field's dataset at the sample's first
    time index, along the trajectory and time axes. Samples of a contiguous
    dataset each form their own group.

    Returns
    -------
    list of list of int
        Sample indices per group, in the order of first appearance.
    """
    source, task = dataset.source, dataset.task
    spec = source.layout.fields[task.input_channel_fields[0]]
    lookback = (task.n_steps_input - 1) * task.step_stride
    extents: dict[object, tuple[int, int]] = {}
    groups: dict[tuple, list[int]] = {}
    for i, (trajectory, time) in enumerate(dataset.index):
        path, local, local_time = source.locate(trajectory, time - lookback)
        if path not in extents:
            with open_hdf5(path, locking=source.layout.locking) as handle:
                extents[path] = _group_extents(handle[spec.path], spec.axes)
        along_trajectory, along_time = extents[path]
        key = (path, local // along_trajectory, local_time // along_time)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _group_extents(dataset: h5py.Dataset, axes: Sequence[str]) -> tuple[int, int]:
    # Chunk extents along trajectory and time; 1 for a missing axis or no chunks.
    if dataset.chunks is None:
        return 1, 1
    chunks = dict(zip(axes, dataset.chunks, strict=True))
    return chunks.get(TRAJECTORY, 1), chunks.get(TIME, 1)
