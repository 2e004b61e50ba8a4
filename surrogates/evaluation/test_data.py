"""Held-out solver output in physical units, arranged for evaluation."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from surrogates.data import HDF5Source, layout_from_dict
from surrogates.emulator import Surrogate

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TestData:
    """Test-split windows in physical units.

    ``initial_states`` is ``(B, n_steps_input, C, H, W)``, ``truth`` is
    ``(B, n_steps + 1, C, H, W)`` with ``truth[:, 0]`` the newest initial state, and
    ``conditions`` maps each condition name to ``(B,)`` values. The one-step arrays
    hold up to ``max_one_step_samples`` further windows.

    ``mask`` is the layout's mask, a bool ``(H, W)`` tensor True at valid points,
    or ``None``. At masked points the inputs hold the training mean of each
    channel (0 once normalized, as in training), and ``truth`` and
    ``one_step_targets`` hold the stored values, which may be NaN.
    """

    trajectories: list[int]
    initial_states: torch.Tensor
    truth: torch.Tensor
    conditions: dict[str, torch.Tensor]
    one_step_inputs: torch.Tensor
    one_step_targets: torch.Tensor
    one_step_conditions: dict[str, torch.Tensor]
    persistence_available: bool
    output_channel_names: list[str]
    mask: torch.Tensor | None = None

    @property
    def n_steps(self) -> int:
        """Number of rollout steps, ``truth.shape[1] - 1``."""
        return self.truth.shape[1] - 1

    def one_step_batch(self):
        """Return ``(inputs, conditions, targets)`` of the one-step samples."""
        return self.one_step_inputs, self.one_step_conditions, self.one_step_targets

    def persistence(self, inputs: torch.Tensor) -> torch.Tensor:
        """Predict that the newest input state stays as it is."""
        return inputs[:, -1, -self.one_step_targets.shape[1] :]

    def persistence_rollout(self) -> torch.Tensor:
        """Persistence forecast as a one-member rollout ``(1, B, T, C, H, W)``."""
        newest = self.truth[:, :1]
        return newest.expand_as(self.truth).unsqueeze(0).clone()


def _evenly_spaced(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in picks]


def _read_window(source, fields, trajectory: int, times: slice) -> torch.Tensor:
    arrays = [source.read(name, trajectory, times) for name in fields]
    return torch.from_numpy(np.concatenate(arrays, axis=1))


def _fill_masked(inputs: torch.Tensor, mask, fill: torch.Tensor) -> torch.Tensor:
    # inputs (B, T, C, *space), fill (C,): fill[c] at every masked point of channel c
    if mask is None:
        return inputs
    fill = fill.to(inputs.dtype).reshape(-1, *[1] * mask.ndim)
    return torch.where(torch.from_numpy(mask), inputs, fill)


def load_test_data(
    surrogate: Surrogate,
    *,
    n_rollout_steps: int,
    max_initial_states: int,
    max_one_step_samples: int,
) -> TestData:
    """Read the test trajectories stored in the surrogate's checkpoint.

    Rollout initial states are spread evenly over the test trajectories and over the
    start times that leave room for ``n_rollout_steps`` steps (fewer steps when the
    trajectories are short).
    """
    meta = surrogate.meta
    source = HDF5Source(layout_from_dict(meta["layout"]))
    task = surrogate.task
    trajectories = list(meta["splits"]["test"])
    if not trajectories:
        raise ValueError(
            "the checkpoint's test split is empty; train with a positive test "
            "fraction (split.fractions) to evaluate"
        )
    k, n_in = task.step_stride, task.n_steps_input
    first = (n_in - 1) * k
    n_steps = min(n_rollout_steps, (source.n_times - 1 - first) // k)
    if n_steps < 1:
        raise ValueError(
            f"test trajectories have {source.n_times} snapshots, too few for one step "
            f"of stride {k} after {n_in} input steps"
        )
    in_fields, out_fields = task.input_channel_fields, task.output_fields
    normalizer = surrogate.normalizer
    input_means = torch.tensor(
        [m for name in in_fields for m in normalizer.field_mean[name]]
    )

    def windows(pairs, n):
        inputs, targets, conditions = [], [], {c: [] for c in task.conditions}
        for trajectory, t in pairs:
            inputs.append(
                _read_window(source, in_fields, trajectory, slice(t - first, t + 1, k))
            )
            targets.append(
                _read_window(source, out_fields, trajectory, slice(t, t + n * k + 1, k))
            )
            for c in task.conditions:
                conditions[c].append(source.parameters[c][trajectory])
        conditions = {c: torch.tensor(v) for c, v in conditions.items()}
        inputs = _fill_masked(torch.stack(inputs), source.mask, input_means)
        return inputs, torch.stack(targets), conditions

    last_start = source.n_times - 1 - n_steps * k
    per_trajectory = max(1, -(-max_initial_states // len(trajectories)))
    starts = _evenly_spaced(list(range(first, last_start + 1)), per_trajectory)
    rollout_pairs = _evenly_spaced(
        [(tr, t) for tr in trajectories for t in starts], max_initial_states
    )
    initial_states, truth, conditions = windows(rollout_pairs, n_steps)

    one_step_pairs = [
        (tr, t) for tr in trajectories for t in range(first, source.n_times - k)
    ]
    one_step_pairs = _evenly_spaced(one_step_pairs, max_one_step_samples)
    one_inputs, one_targets, one_conditions = windows(one_step_pairs, 1)
    source.close()
    names = [
        name if source.fields[name].n_components == 1 else f"{name}[{i}]"
        for name in out_fields
        for i in range(source.fields[name].n_components)
    ]
    return TestData(
        trajectories=trajectories,
        initial_states=initial_states,
        truth=truth,
        conditions=conditions,
        one_step_inputs=one_inputs,
        one_step_targets=one_targets[:, 1],
        one_step_conditions=one_conditions,
        persistence_available=tuple(out_fields) == tuple(in_fields),
        output_channel_names=names,
        mask=None if source.mask is None else torch.from_numpy(source.mask),
    )
