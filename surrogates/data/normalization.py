"""Normalization statistics fitted on the training split only.

Statistics are accumulated in float64 over every training snapshot and stored as
plain lists inside the checkpoint, so evaluation and emulation reuse them and never
refit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Normalizer:
    """Per-channel affine maps for fields and per-parameter maps for conditions.

    ``field_mean[name]`` and ``field_std[name]`` contain one value per component of
    the field. Conditions are centred and scaled by the training mean and standard
    deviation, and their training range is kept for out-of-range warnings.
    """

    field_mean: dict[str, list[float]]
    field_std: dict[str, list[float]]
    condition_mean: dict[str, float]
    condition_std: dict[str, float]
    condition_min: dict[str, float]
    condition_max: dict[str, float]

    def to_dict(self) -> dict:
        """Return the statistics as plain JSON-serializable data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Normalizer:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{f.name: dict(data[f.name]) for f in dataclasses.fields(cls)})

    def _field_affine(self, fields: Sequence[str], like: torch.Tensor):
        mean = [m for name in fields for m in self.field_mean[name]]
        std = [s for name in fields for s in self.field_std[name]]
        shape = (len(mean), 1, 1)
        mean = torch.tensor(mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalize_fields(
        self, values: torch.Tensor, fields: Sequence[str]
    ) -> torch.Tensor:
        """Normalize ``(..., C, H, W)`` values whose channels are ``fields``."""
        mean, std = self._field_affine(fields, values)
        return (values - mean) / std

    def denormalize_fields(
        self, values: torch.Tensor, fields: Sequence[str]
    ) -> torch.Tensor:
        """Invert :meth:`normalize_fields`."""
        mean, std = self._field_affine(fields, values)
        return values * std + mean

    def normalize_conditions(
        self, values: torch.Tensor, names: Sequence[str]
    ) -> torch.Tensor:
        """Normalize ``(..., n_conditions)`` parameter values, ordered as ``names``."""
        mean = torch.tensor([self.condition_mean[n] for n in names], dtype=values.dtype)
        std = torch.tensor([self.condition_std[n] for n in names], dtype=values.dtype)
        return (values - mean.to(values.device)) / std.to(values.device)


class _RunningMoments:
    """Chan's parallel update of count, mean and sum of squared deviations."""

    def __init__(self, n_channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_channels)
        self.m2 = np.zeros(n_channels)

    def update(self, values: np.ndarray, mask: np.ndarray | None = None) -> None:
        # values: (T, C, *space) -> moments per channel C, over the points where
        # mask (*space) is True when a mask is given.
        if mask is not None:
            values = values[:, :, mask]
        values = np.moveaxis(values.astype(np.float64), 1, 0).reshape(
            values.shape[1], -1
        )
        count = values.shape[1]
        mean = values.mean(axis=1)
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / total
        self.count = total

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count - 1, 1))


def fit_normalizer(
    source,
    trajectories: Iterable[int],
    fields: Sequence[str],
    conditions: Sequence[str],
    *,
    min_std: float = 1e-8,
) -> Normalizer:
    """Fit normalization statistics on the given (training) trajectories.

    Parameters
    ----------
    source
        An :class:`~surrogates.data.source.HDF5Source`.
    trajectories
        Indices of the training trajectories; no other trajectory is read.
    fields, conditions
        Names of the fields and parameters to fit.
    min_std
        Standard deviations below this (constant fields) are replaced by 1.

    With a layout mask (``source.mask``), means and standard deviations run over
    the valid points only, so values stored at masked points (NaN, fill values)
    do not enter them.
    """
    trajectories = list(trajectories)
    mask = source.mask
    moments = {
        name: _RunningMoments(source.fields[name].n_components) for name in fields
    }
    for trajectory in trajectories:
        for name in fields:
            values = source.read_trajectory(name, trajectory)
            moments[name].update(values, mask)
    field_std = {}
    for name, moment in moments.items():
        std = moment.std()
        field_std[name] = np.where(std < min_std, 1.0, std).tolist()
    params = {n: source.parameters[n][trajectories] for n in conditions}
    condition_std = {n: float(v.std()) for n, v in params.items()}
    normalizer = Normalizer(
        field_mean={n: m.mean.tolist() for n, m in moments.items()},
        field_std=field_std,
        condition_mean={n: float(v.mean()) for n, v in params.items()},
        condition_std={
            n: (s if s > min_std else 1.0) for n, s in condition_std.items()
        },
        condition_min={n: float(v.min()) for n, v in params.items()},
        condition_max={n: float(v.max()) for n, v in params.items()},
    )
    log.info("fitted normalization on %d training trajectories", len(trajectories))
    return normalizer
