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
from torch.utils.data import DataLoader, Dataset, Sampler

from surrogates.data.chunks import ReadPlan
from surrogates.data.normalization import Normalizer
from surrogates.data.source import HDF5Source

log = logging.getLogger(__name__)


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
    """

    input_fields: tuple[str, ...]
    output_fields: tuple[str, ...]
    conditions: tuple[str, ...] = ()
    n_steps_input: int = 1
    step_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("input_fields", "output_fields", "conditions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.input_fields or not self.output_fields:
            raise ValueError(
                "task: input_fields and output_fields must each name at least one field"
            )
        if self.n_steps_input < 1 or self.step_stride < 1:
            raise ValueError(
                f"task: n_steps_input={self.n_steps_input} and step_stride="
                f"{self.step_stride} must both be at least 1"
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
    All are normalized float32. ``trajectory`` and ``time`` (the index of the newest
    input snapshot) identify the sample.

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
        self._affine: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        span = (task.n_steps_input - 1) * task.step_stride
        first, last = span, source.n_times - 1 - task.step_stride
        if last < first:
            raise ValueError(
                f"{source.n_times} snapshots per trajectory are too few for "
                f"n_steps_input={task.n_steps_input} and step_stride="
                f"{task.step_stride}; lower them or write longer trajectories"
            )
        self.index = [
            (tr, t) for tr in self.trajectories for t in range(first, last + 1)
        ]
        source.plan_reads(
            ReadPlan(
                time_span=span + task.step_stride + 1,
                n_read_times=task.n_steps_input + 1,
            )
        )
        conditions = (
            np.stack([source.parameters[name] for name in task.conditions], axis=-1)
            if task.conditions
            else np.zeros((source.n_trajectories, 0))
        )
        self.conditions = normalizer.normalize_conditions(
            torch.as_tensor(conditions, dtype=torch.float64), task.conditions
        ).float()

    def __len__(self) -> int:
        return len(self.index)

    def read_states(self, trajectory: int, times: slice, fields: Sequence[str]):
        """Read and normalize fields at the given times, ``(T, C, H, W)``."""
        arrays = [self.source.read(name, trajectory, times) for name in fields]
        joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)
        values = torch.from_numpy(joined)
        mean, std = self._field_affine(tuple(fields))
        # In place, because HDF5Source.read returns a new array on every call: the
        # float32 arithmetic of Normalizer.normalize_fields without temporaries.
        return values.sub_(mean).div_(std)

    def _field_affine(self, fields: tuple[str, ...]):
        # Mean and std per channel, (C, 1, 1) float32, built once per field tuple.
        if fields not in self._affine:
            mean = [m for name in fields for m in self.normalizer.field_mean[name]]
            std = [s for name in fields for s in self.normalizer.field_std[name]]
            shape = (len(mean), 1, 1)
            self._affine[fields] = (
                torch.tensor(mean, dtype=torch.float32).view(shape),
                torch.tensor(std, dtype=torch.float32).view(shape),
            )
        return self._affine[fields]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        trajectory, time = self.index[i]
        task = self.task
        k = task.step_stride
        start = time - (task.n_steps_input - 1) * k
        window = slice(start, time + k + 1, k)
        in_fields = task.input_channel_fields
        if tuple(task.output_fields) == in_fields:
            states = self.read_states(trajectory, window, in_fields)
            inputs, targets = states[:-1], states[-1]
        else:
            inputs = self.read_states(trajectory, slice(start, time + 1, k), in_fields)
            after = slice(time + k, time + k + 1)
            targets = self.read_states(trajectory, after, task.output_fields)[0]
        return {
            "inputs": inputs.reshape(-1, *inputs.shape[-2:]),
            "conditions": self.conditions[trajectory],
            "targets": targets,
            "trajectory": torch.tensor(trajectory),
            "time": torch.tensor(time),
        }


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
    """Build a DataLoader whose workers each open their own HDF5 handles.

    Closes the parent's handles first, so that no HDF5 file is open in the parent
    process when workers start. With ``seed``, the loader draws its worker base seed
    from its own generator instead of the global torch generator, so creating a
    loader (as a resumed run does mid-epoch) leaves the global random stream as it
    was. Logs (once per dataset) chunks that contain many more samples than a
    batch.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    dataset.source.check_chunking(batch_size)
    dataset.source.close()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=generator,
    )
