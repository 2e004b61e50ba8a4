"""Preflight check of a layout before training: resolved metadata, statistics, problems.

:func:`run_preflight` builds the source as training would, describes every dataset,
and streams every field once, one block of snapshots at a time, to compute statistics
in float64 and to count and locate NaN and inf values. Memory stays bounded by
``max_block_bytes`` however large the files are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from surrogates.data.files import open_hdf5
from surrogates.data.layout import TIME, Layout, layout_from_dict
from surrogates.data.source import HDF5Source

log = logging.getLogger(__name__)


class FieldStatistics:
    """Per-component min, max, mean and std of finite values, and non-finite counts.

    The values are the float32 values the model reads. Moments are merged block by
    block in float64 (Chan's parallel update), so the result does not depend on the
    block size beyond rounding. With a ``mask`` (``(*space)`` bool, True at valid
    points), statistics, NaN and inf counts and offenders cover the valid points,
    and NaN and inf at masked points are counted apart in ``n_nan_masked`` and
    ``n_inf_masked``.
    """

    def __init__(
        self, n_components: int, max_offenders: int, mask: np.ndarray | None = None
    ) -> None:
        self.count = np.zeros(n_components, dtype=np.int64)
        self.mean = np.zeros(n_components)
        self.m2 = np.zeros(n_components)
        self.min = np.full(n_components, np.inf)
        self.max = np.full(n_components, -np.inf)
        self.n_nan = np.zeros(n_components, dtype=np.int64)
        self.n_inf = np.zeros(n_components, dtype=np.int64)
        self.n_nan_masked = np.zeros(n_components, dtype=np.int64)
        self.n_inf_masked = np.zeros(n_components, dtype=np.int64)
        self.mask = mask
        self.max_offenders = max_offenders
        self.offenders: list[tuple[int, ...]] = []

    def update(self, block: np.ndarray, trajectory: int, first_time: int) -> None:
        """Add a block ``(T, C, *space)`` of one trajectory from time ``first_time``."""
        for c in range(block.shape[1]):
            values = block[:, c]
            if self.mask is not None:
                masked = values[:, ~self.mask]
                self.n_nan_masked[c] += int(np.isnan(masked).sum())
                self.n_inf_masked[c] += int(np.isinf(masked).sum())
                values = values[:, self.mask]
            values = values.astype(np.float64).reshape(-1)
            finite = np.isfinite(values)
            if not finite.all():
                self.n_nan[c] += int(np.isnan(values).sum())
                self.n_inf[c] += int(np.isinf(values).sum())
                values = values[finite]
            if values.size:
                self._merge(c, values)
        room = self.max_offenders - len(self.offenders)
        offending = ~np.isfinite(block)
        if self.mask is not None:
            offending &= self.mask
        if room > 0 and offending.any():
            for t, c, *space in np.argwhere(offending)[:room]:
                value = float(block[(t, c, *space)])
                index = (trajectory, first_time + int(t), int(c), *map(int, space))
                self.offenders.append((*index, value))

    def _merge(self, c: int, values: np.ndarray) -> None:
        count, mean = values.size, values.mean()
        m2 = float(((values - mean) ** 2).sum())
        total = self.count[c] + count
        delta = mean - self.mean[c]
        self.mean[c] += delta * count / total
        self.m2[c] += m2 + delta**2 * self.count[c] * count / total
        self.count[c] = total
        self.min[c] = min(self.min[c], values.min())
        self.max[c] = max(self.max[c], values.max())

    def to_dict(self) -> dict[str, list]:
        """Return the statistics per component; ``None`` where no value is finite.

        ``n_nan`` and ``n_inf`` count valid points, ``n_nan_masked`` and
        ``n_inf_masked`` masked points (zeros without a mask).
        """
        seen = self.count > 0
        std = np.sqrt(self.m2 / np.maximum(self.count, 1))  # population std
        return {
            "count": self.count.tolist(),
            "min": [
                float(v) if s else None for v, s in zip(self.min, seen, strict=True)
            ],
            "max": [
                float(v) if s else None for v, s in zip(self.max, seen, strict=True)
            ],
            "mean": [
                float(v) if s else None for v, s in zip(self.mean, seen, strict=True)
            ],
            "std": [float(v) if s else None for v, s in zip(std, seen, strict=True)],
            "n_nan": self.n_nan.tolist(),
            "n_inf": self.n_inf.tolist(),
            "n_nan_masked": self.n_nan_masked.tolist(),
            "n_inf_masked": self.n_inf_masked.tolist(),
        }


def run_preflight(
    layout: Layout | Mapping[str, Any],
    *,
    max_offenders: int = 5,
    max_block_bytes: int = 64 * 2**20,
) -> tuple[dict[str, Any], list[str]]:
    """Check that a layout reads and that its data are finite and well formed.

    Parameters
    ----------
    layout
        A :class:`Layout` or its plain-data form (a layout config).
    max_offenders
        NaN or inf values located per field; all of them are counted.
    max_block_bytes
        Upper bound of one read while streaming a field, in bytes (float64 copy).

    Returns
    -------
    report : dict
        ``layout``, ``files``, ``n_trajectories``, ``n_times``, ``space`` and
        ``mask`` (``None``, or its source and counts of valid and masked points).
        ``fields`` maps each name to its dataset (path, axes, shape, dtype, chunks,
        compression, units) and ``statistics``. ``parameters`` and ``grid`` give
        ranges and units. Only ``layout`` is present when the source cannot be
        built.
    problems : list of str
        One message per problem; empty when the data are ready for training.
        NaN and inf at masked points are reported in the statistics and logged,
        but are not problems.
    """
    try:
        if not isinstance(layout, Layout):
            layout = layout_from_dict(layout)
        source = HDF5Source(layout)
    except (ValueError, OSError) as error:
        plain = layout.to_dict() if isinstance(layout, Layout) else dict(layout)
        return {"layout": plain}, [f"{type(error).__name__}: {error}"]
    try:
        problems: list[str] = []
        report = {
            "layout": layout.to_dict(),
            **source.describe(),
            "fields": describe_fields(source),
            "parameters": describe_parameters(source),
            "grid": describe_grid(source, problems),
        }
        for name, info in report["fields"].items():
            statistics = field_statistics(
                source, name, max_offenders, max_block_bytes, problems
            )
            info["statistics"] = statistics
    finally:
        source.close()
    return report, problems


def describe_fields(source: HDF5Source) -> dict[str, dict]:
    """Return each field's layout entry and its dataset in the first file."""
    fields = {}
    with open_hdf5(source.files[0], locking=source.layout.locking) as handle:
        for name, spec in source.layout.fields.items():
            dataset = handle[spec.path]
            fields[name] = {
                "path": spec.path,
                "axes": list(spec.axes),
                "select": dict(spec.select),
                "shape": list(dataset.shape),
                "dtype": str(dataset.dtype),
                "chunks": list(dataset.chunks) if dataset.chunks else None,
                "compression": dataset.compression,
                "compression_opts": dataset.compression_opts,
                "units": source.fields[name].units,
                "n_components": source.fields[name].n_components,
            }
    return fields


def describe_parameters(source: HDF5Source) -> dict[str, dict]:
    """Return the range, distinct count and units of every parameter."""
    return {
        name: {
            "min": float(values.min()),
            "max": float(values.max()),
            "n_distinct": int(np.unique(values).size),
            "units": source.parameter_units[name],
        }
        for name, values in source.parameters.items()
    }


def describe_grid(source: HDF5Source, problems: list[str]) -> dict[str, dict]:
    """Return the size, range and units of every grid axis; flag disordered axes."""
    grid = {}
    for axis, coordinates in source.grid.items():
        values = coordinates["values"]
        steps = np.diff(values)
        # Time must increase; spatial coordinates may also decrease monotonically.
        ordered = np.all(steps > 0) or (axis != TIME and np.all(steps < 0))
        if not (np.all(np.isfinite(values)) and ordered):
            problems.append(
                f"grid axis {axis!r}: coordinates {values[:6].tolist()}... are not "
                "finite and strictly monotonic; fix 'grid' in the layout (path, "
                "attribute or slice)"
            )
        grid[axis] = {
            "n": int(values.size),
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None,
            "units": coordinates["units"],
        }
    return grid


def field_statistics(
    source: HDF5Source,
    name: str,
    max_offenders: int,
    max_block_bytes: int,
    problems: list[str],
) -> dict[str, Any]:
    """Stream one field over all trajectories and times; add problems found."""
    n_components = source.fields[name].n_components
    snapshot_bytes = 8 * n_components * int(np.prod(source.space_shape))
    block = max(1, max_block_bytes // snapshot_bytes)
    statistics = FieldStatistics(n_components, max_offenders, source.mask)
    log.info("preflight: reading field %r in blocks of %d snapshots", name, block)
    try:
        for trajectory in range(source.n_trajectories):
            for start in range(0, source.n_times, block):
                times = slice(start, min(start + block, source.n_times))
                values = source.read(name, trajectory, times, check_finite=False)
                statistics.update(values, trajectory, start)
    except (ValueError, OSError) as error:
        problems.append(
            f"field {name!r}: reading trajectory {trajectory}, times "
            f"{times.start}:{times.stop} failed: {error}"
        )
    result = statistics.to_dict()
    result["offenders"] = [
        locate_offender(source, name, offender) for offender in statistics.offenders
    ]
    n_nan, n_inf = sum(result["n_nan"]), sum(result["n_inf"])
    if n_nan or n_inf:
        where = _first_offender(result["offenders"])
        points = "" if source.mask is None else " at valid points"
        problems.append(
            f"field {name!r}: {n_nan} NaN and {n_inf} inf values{points}{where}"
        )
    n_masked = sum(result["n_nan_masked"]) + sum(result["n_inf_masked"])
    if n_masked:
        log.info(
            "preflight: field %r has %d NaN or inf values at masked points, which "
            "are ignored",
            name,
            n_masked,
        )
    return result


def _first_offender(offenders: list[dict]) -> str:
    if not offenders:
        return ""
    first = offenders[0]
    return (
        f"; the first is {first['value']} in {first['file']}, dataset "
        f"{first['dataset']!r}, trajectory {first['trajectory_in_file']} and time "
        f"index {first['time_in_file']} of that file, component "
        f"{first['component']}, {first['index']}. Fix or drop that trajectory in "
        "the solver output, or mark points outside the domain with the layout's "
        "'mask'"
    )


def locate_offender(source: HDF5Source, name: str, offender: tuple) -> dict[str, Any]:
    """Return where a non-finite value sits: global and in-file indices."""
    trajectory, time, component, *space = offender[:-1]
    path, local, local_time = source.locate(trajectory, time)
    return {
        "file": str(path),
        "dataset": source.layout.fields[name].path,
        "trajectory": trajectory,
        "trajectory_in_file": local,
        "time": time,
        "time_in_file": local_time,
        "component": component,
        "index": dict(zip(source.layout.space, space, strict=True)),
        "value": offender[-1],
    }
