"""Step-emulation samples: (states up to t, conditions) -> state at t + k.

Samples are split by trajectory, never by snapshot, so no test trajectory leaks into
training. Each sample is read lazily from the source in model layout.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    Sampler,
    SequentialSampler,
)

from surrogates.data.chunks import ReadPlan
from surrogates.data.normalization import Normalizer
from surrogates.data.source import HDF5Source

log = logging.getLogger(__name__)

MAX_INDEXED_FRACTION = 0.2
"""Masked fraction of the grid below which batches zero masked points by index."""


@dataclasses.dataclass(frozen=True)
class StepTask:
    """Inputs, outputs and conditions of one surrogate step.

    Parameters
    ----------
    input_fields
        Fields shown to the generator at each input time.
    output_fields
        Fields the generator predicts at ``t + step_stride``.
    conditions
        Parameters passed as scalar conditions, in this order.
    n_steps_input
        Number of past states shown (``t``, ``t - k``, ...).
    step_stride
        Snapshot indices spanned by one surrogate step, ``k``.
    n_steps_output
        Future states per sample, ``t + k`` to ``t + n_steps_output * k``; more
        than one serves unrolled training and temporal discriminators.
    """

    input_fields: tuple[str, ...]
    output_fields: tuple[str, ...]
    conditions: tuple[str, ...] = ()
    n_steps_input: int = 1
    step_stride: int = 1
    n_steps_output: int = 1

    def __post_init__(self) -> None:
        for name in ("input_fields", "output_fields", "conditions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.input_fields or not self.output_fields:
            raise ValueError(
                "task: input_fields and output_fields must each name at least one field"
            )
        counts = ("n_steps_input", "step_stride", "n_steps_output")
        if min(getattr(self, name) for name in counts) < 1:
            raise ValueError(
                f"task: n_steps_input={self.n_steps_input}, step_stride="
                f"{self.step_stride} and n_steps_output={self.n_steps_output} must "
                "each be at least 1"
            )

    @property
    def input_channel_fields(self) -> tuple[str, ...]:
        """Input fields in channel order, output fields last when all are inputs.

        Putting the output fields last lets a residual generator add its increment to
        the last ``out_channels`` input channels, which then hold the newest state.
        """
        if set(self.output_fields) <= set(self.input_fields):
            rest = tuple(f for f in self.input_fields if f not in self.output_fields)
            return rest + self.output_fields
        return self.input_fields

    @property
    def residual(self) -> bool:
        """Whether the newest input state contains every output field."""
        return set(self.output_fields) <= set(self.input_fields)


def split_trajectories(
    n_trajectories: int, fractions: Sequence[float], seed: int
) -> dict[str, list[int]]:
    """Split trajectory indices into train, valid and test by a seeded permutation.

    Each split with a positive fraction receives at least one trajectory.

    Raises
    ------
    ValueError
        If the fractions do not sum to 1 or there are too few trajectories.
    """
    names = ("train", "valid", "test")
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(
            f"split fractions {list(fractions)} must be three non-negative numbers "
            "(train, valid, test) that sum to 1"
        )
    n_needed = sum(f > 0 for f in fractions)
    if n_trajectories < n_needed:
        raise ValueError(
            f"{n_trajectories} trajectories cannot fill {n_needed} splits; a split "
            "is by trajectory, so write more trajectories or set a fraction to 0"
        )
    order = np.random.default_rng(seed).permutation(n_trajectories)
    counts = [round(f * n_trajectories) for f in fractions]
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            counts[i] = 1
    counts[0] = n_trajectories - counts[1] - counts[2]
    edges = np.cumsum([0, *counts])
    return {
        name: sorted(order[edges[i] : edges[i + 1]].tolist())
        for i, name in enumerate(names)
    }


class StepDataset(Dataset):
    """Samples ``{"inputs", "conditions", "targets"}`` of a :class:`StepTask`.

    ``inputs`` has shape ``(n_steps_input * C_in, H, W)``, oldest state first;
    ``conditions`` has shape ``(n_conditions,)``; ``targets`` has ``(C_out, H, W)``.
    With ``task.n_steps_output > 1`` a sample also has ``target_sequence``,
    ``(n_steps_output, C_out, H, W)``: the states at ``t + k, ..., t + n k``, whose
    first entry is ``targets``. All are normalized float32. ``trajectory`` and
    ``time`` (the index of the newest input snapshot) identify the sample.

    With a layout mask, ``mask`` is a bool tensor ``(H, W)``, True at valid points
    (else ``None``), and ``inputs``, ``targets`` and ``target_sequence`` are 0.0 at
    masked points after normalization, whatever the file stores there, NaN
    included. Only valid points are checked for NaN and inf. Losses should select
    the valid points (``values[..., mask]``) rather than multiply by the mask,
    because a network's output at masked points is not constrained.

    :meth:`read_batch` reads several samples into one preallocated batch and
    normalizes and checks them together; :func:`make_loader` uses it, so a loader
    pays the per-sample Python cost of indexing and collation once per batch.

    Building the dataset sizes the source's chunk caches for the time window of one
    sample (:meth:`HDF5Source.plan_reads`).
    """

    def __init__(
        self,
        source: HDF5Source,
        trajectories: Sequence[int],
        task: StepTask,
        normalizer: Normalizer,
    ) -> None:
        self.source = source
        self.trajectories = list(trajectories)
        self.task = task
        self.normalizer = normalizer
        self.mask = None if source.mask is None else torch.from_numpy(source.mask)
        k = task.step_stride
        lookback = (task.n_steps_input - 1) * k
        first, last = lookback, source.n_times - 1 - task.n_steps_output * k
        if last < first:
            raise ValueError(
                f"{source.n_times} snapshots per trajectory are too few for "
                f"n_steps_input={task.n_steps_input}, n_steps_output="
                f"{task.n_steps_output} and step_stride={k}; lower them or write "
                "longer trajectories"
            )
        self.index = [
            (tr, t) for tr in self.trajectories for t in range(first, last + 1)
        ]
        n_states = task.n_steps_input + task.n_steps_output
        source.plan_reads(
            ReadPlan(time_span=(n_states - 1) * k + 1, n_read_times=n_states)
        )
        conditions = (
            np.stack([source.parameters[name] for name in task.conditions], axis=-1)
            if task.conditions
            else np.zeros((source.n_trajectories, 0))
        )
        self.conditions = normalizer.normalize_conditions(
            torch.as_tensor(conditions, dtype=torch.float64), task.conditions
        ).float()
        fields = task.input_channel_fields
        self._inputs = _FieldGroup(source, normalizer, fields)
        self._outputs = (
            None
            if fields == task.output_fields
            else _FieldGroup(source, normalizer, task.output_fields)
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.read_batch([i]).items()}

    def read_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Read the samples ``indices`` as one batch, each key with a leading ``B``.

        Raises
        ------
        NonFiniteValueError
            If a value read is NaN or inf, naming file, dataset and index.
        """
        task = self.task
        k, n_in, n_out = task.step_stride, task.n_steps_input, task.n_steps_output
        places = [self.index[i] for i in indices]
        starts = [(trajectory, time - (n_in - 1) * k) for trajectory, time in places]
        if self._outputs is None:
            # Output fields are the input fields: one read of the whole window.
            states = self._inputs.read_batch(starts, n_in + n_out, k)
            inputs, outputs = states[:, :n_in], states[:, n_in:]
        else:
            inputs = self._inputs.read_batch(starts, n_in, k)
            after = [(trajectory, time + k) for trajectory, time in places]
            outputs = self._outputs.read_batch(after, n_out, k)
        trajectories = torch.tensor([tr for tr, _ in places])
        batch = {
            "inputs": inputs.flatten(1, 2),
            "conditions": self.conditions[trajectories],
            "targets": outputs[:, 0],
            "trajectory": trajectories,
            "time": torch.tensor([t for _, t in places]),
        }
        if task.n_steps_output > 1:
            batch["target_sequence"] = outputs
        return batch


class _FieldGroup:
    """Fields read side by side as channels: reading into and normalizing batches."""

    def __init__(
        self, source: HDF5Source, normalizer: Normalizer, fields: Sequence[str]
    ) -> None:
        self.source = source
        self.fields = tuple(fields)
        widths = [source.fields[name].n_components for name in self.fields]
        edges = np.cumsum([0, *widths]).tolist()
        # (field, first channel, end channel) in the batch's channel axis
        self.slots = list(zip(self.fields, edges[:-1], edges[1:], strict=True))
        mean = [m for name in self.fields for m in normalizer.field_mean[name]]
        std = [s for name in self.fields for s in normalizer.field_std[name]]
        shape = (len(mean), *[1] * len(source.space_shape))
        # float32 per channel, as Normalizer.normalize_fields uses; a multiply by
        # the float32 reciprocal would differ from its division in the last bit.
        self.mean = np.array(mean, dtype=np.float32).reshape(shape)
        self.std = np.array(std, dtype=np.float32).reshape(shape)
        # Masked points of one snapshot, (*space) bool, and their flat indices when
        # they are few: assigning by index then beats a pass over the whole batch.
        # Measured crossover: near 20% masked (numpy 2.4, 128^2 and 512^2 grids).
        self.masked = None if source.mask is None else ~source.mask
        self.masked_points = None
        if self.masked is not None and self.masked.mean() < MAX_INDEXED_FRACTION:
            self.masked_points = np.flatnonzero(self.masked.ravel())

    def read_batch(
        self, starts: Sequence[tuple[int, int]], n_times: int, stride: int
    ) -> torch.Tensor:
        """Read normalized windows of ``n_times`` states, ``(B, T, C, *space)``.

        ``starts`` holds one ``(trajectory, first time index)`` pair per sample;
        the states are ``stride`` time indices apart.

        Masked points are set to 0.0 after normalization.

        Raises
        ------
        NonFiniteValueError
            If a value at a valid point is NaN or inf.
        """
        n_channels = self.slots[-1][2]
        shape = (len(starts), n_times, n_channels, *self.source.space_shape)
        values = np.empty(shape, dtype=np.float32)
        span = (n_times - 1) * stride + 1
        windows = [
            (trajectory, range(first, first + span, stride))
            for trajectory, first in starts
        ]
        if len(self.slots) == 1:
            self.source.fill_batch(values, self.fields[0], windows)
        else:
            for b, (trajectory, times) in enumerate(windows):
                for name, lo, hi in self.slots:
                    self.source.fill_unchecked(
                        values[b, :, lo:hi], name, trajectory, times
                    )
        # numpy rather than torch: these single-threaded passes over a batch do not
        # wait on torch's intra-op threads, which stall when the cores are busy.
        # Masked points may contain NaN, inf or fill values that overflow here.
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(values, self.mean, out=values)
            np.divide(values, self.std, out=values)

        # Zero masked points by assignment, not by a multiply, since NaN * 0 is NaN.
        if self.masked_points is not None:
            # values is C-contiguous, so this reshape is a view of it.
            n_points = int(np.prod(self.source.space_shape))
            values.reshape(-1, n_points)[:, self.masked_points] = 0.0
        elif self.masked is not None:
            np.copyto(values, 0.0, where=self.masked)
        if not np.isfinite(values).all():
            self._raise_non_finite(values, windows)
        return torch.from_numpy(values)

    def _raise_non_finite(self, values: np.ndarray, windows) -> None:
        # Re-read each sample that has a non-finite value with the source's check,
        # whose error names file, dataset and index. Returns if the raw values are
        # finite and only the normalization overflowed.
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        for b in np.flatnonzero(~finite).tolist():
            trajectory, times = windows[b]
            window = slice(times.start, times.stop, times.step)
            for name in self.fields:
                self.source.read(name, trajectory, window)


class EpochSampler(Sampler[int]):
    """Seeded shuffled order per epoch that can start mid-epoch, for exact resume.

    With several ranks, each takes every ``world_size``-th index of the same
    permutation, so ranks see disjoint samples. ``start`` skips that many indices of
    this rank's share, which is how a resumed run continues where it stopped.
    """

    def __init__(
        self,
        n_samples: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n_samples = n_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Continue at index ``start`` of this rank's share of epoch ``epoch``."""
        self.epoch = epoch
        self.start = start

    def _order(self) -> list[int]:
        if not self.shuffle:
            order = list(range(self.n_samples))
        else:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n_samples, generator=generator).tolist()
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return len(self._order()) - self.start


class _Batches(Dataset):
    """Items are whole batches, each read by one :meth:`StepDataset.read_batch`."""

    def __init__(self, dataset: StepDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.dataset.read_batch(indices)


def make_loader(
    dataset: StepDataset,
    *,
    batch_size: int,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    seed: int | None = None,
) -> DataLoader:
    """Build a DataLoader of batches that each worker reads with its own HDF5 handles.

    Each batch is read by one :meth:`StepDataset.read_batch` call, in the order of
    ``sampler`` (sequential when None), and equals the default collation of the
    samples ``dataset[i]``. The parent's handles are closed first, so that no HDF5
    file is open in the parent process when workers start. With ``seed``, the
    loader draws its worker base seed from its own generator instead of the global
    torch generator, so creating a loader (as a resumed run does mid-epoch) leaves
    the global random stream as it was. Logs (once per dataset) chunks that contain
    many more samples than a batch.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    dataset.source.check_chunking(batch_size)
    dataset.source.close()
    order = SequentialSampler(dataset) if sampler is None else sampler
    return DataLoader(
        _Batches(dataset),
        batch_size=None,
        sampler=BatchSampler(order, batch_size, drop_last),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=generator,
    )
