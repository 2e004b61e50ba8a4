"""Lazy, fork- and spawn-safe reading of fields from HDF5 files described by a layout.

:class:`HDF5Source` reads only metadata, parameters and grids when it is built. Field
values are read per request, through file handles that each process opens for itself,
so a source pickles as paths and metadata and can be handed to DataLoader workers.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from surrogates.data.layout import (
    COMPONENT,
    TIME,
    TRAJECTORY,
    AxisSpec,
    FieldSpec,
    Layout,
    LayoutError,
    ParameterSpec,
)

log = logging.getLogger(__name__)


class DataFileError(ValueError):
    """A data file that cannot be read as its layout describes."""


class NonFiniteValueError(DataFileError):
    """NaN or inf found in a field."""


@dataclass(frozen=True)
class FieldInfo:
    """Resolved metadata of one field: sizes, units, kind."""

    name: str
    n_components: int
    units: str
    long_name: str


def expand_files(patterns: Sequence[str], layout_name: str = "dataset") -> list[Path]:
    """Expand glob patterns into a sorted list of existing files.

    Raises
    ------
    FileNotFoundError
        Naming the pattern that matched nothing.
    """
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(
                f"layout {layout_name!r}: no file matches {pattern!r} (working "
                f"directory {os.getcwd()}); create it or fix 'files' in the layout"
            )
        paths.extend(Path(m).resolve() for m in matches)
    return paths


def open_hdf5(path: Path | str) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's errors into a clear message."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except OSError as error:
        raise DataFileError(
            f"{path}: cannot be opened as HDF5 ({error}); the file may be truncated "
            "or still being written. Regenerate or re-copy it."
        ) from None


def _dataset(handle: h5py.File, path: str, where: str) -> h5py.Dataset:
    if path not in handle:
        top = sorted(handle.keys())
        raise DataFileError(
            f"{handle.filename}: dataset {path!r} not found ({where}); top-level "
            f"groups and datasets are {top}. Fix 'path' in the layout config."
        )
    dataset = handle[path]
    if not isinstance(dataset, h5py.Dataset):
        raise DataFileError(
            f"{handle.filename}: {path!r} is a group, not a dataset ({where})"
        )
    if dataset.dtype.kind not in "fiu":
        raise DataFileError(
            f"{handle.filename}: dataset {path!r} has non-numeric dtype "
            f"{dataset.dtype} ({where}); fields must be real numbers"
        )
    return dataset


def _attribute_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attribute_text(value.item())
    return str(value)


class HDF5Source:
    """Fields, parameters and grids of one or more HDF5 files, read lazily.

    Parameters
    ----------
    layout
        Where each array lives and the role of each axis.

    Notes
    -----
    Trajectories are numbered across files in sorted file order. Every field read is
    returned in model layout ``(n_times, n_components, *space)`` as native float32,
    whatever the file's dtype, byte order or axis order.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.files = expand_files(layout.files, layout.name)
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()
        self._trajectories: list[tuple[int, int]] = []
        parameters: dict[str, list[float]] = {name: [] for name in layout.parameters}
        shape: dict[str, int] | None = None
        for file_index, path in enumerate(self.files):
            with open_hdf5(path) as handle:
                sizes = self._scan_fields(handle)
                if shape is None:
                    shape = sizes
                    self.fields = self._field_infos(handle)
                    self.grid = self._read_grid(handle, sizes)
                    self.parameter_units = self._parameter_units(handle)
                self._check_same_sizes(path, shape, sizes)
                n_local = sizes.get(TRAJECTORY, 1)
                for name, spec in layout.parameters.items():
                    parameters[name].extend(
                        self._read_parameter(handle, spec, name, n_local)
                    )
                self._trajectories.extend((file_index, i) for i in range(n_local))
        self.sizes = shape
        self.parameters = {
            k: np.asarray(v, dtype=np.float64) for k, v in parameters.items()
        }
        self.space_shape = tuple(shape[axis] for axis in layout.space)
        self.n_times = shape[TIME]
        log.info(
            "layout %r: %d files, %d trajectories, %d times, space %s, fields %s",
            layout.name,
            len(self.files),
            self.n_trajectories,
            self.n_times,
            dict(zip(layout.space, self.space_shape, strict=True)),
            list(self.fields),
        )

    # metadata

    @property
    def n_trajectories(self) -> int:
        """Total number of trajectories over all files."""
        return len(self._trajectories)

    def _scan_fields(self, handle: h5py.File) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for name, spec in self.layout.fields.items():
            where = f"field {name!r}"
            dataset = _dataset(handle, spec.path, where)
            if dataset.ndim != len(spec.axes):
                raise LayoutError(
                    f"{handle.filename}: dataset {spec.path!r} has shape "
                    f"{dataset.shape} ({dataset.ndim} axes) but the layout gives "
                    f"{len(spec.axes)} axes {list(spec.axes)} for {where}; list one "
                    "role per axis"
                )
            for axis, size in zip(spec.axes, dataset.shape, strict=True):
                if axis in spec.select:
                    if not 0 <= spec.select[axis] < size:
                        raise LayoutError(
                            f"{handle.filename}: {where} selects index "
                            f"{spec.select[axis]} on axis {axis!r} of size {size}"
                        )
                    continue
                if axis == COMPONENT:
                    continue
                if sizes.setdefault(axis, size) != size:
                    raise DataFileError(
                        f"{handle.filename}: {where} ({spec.path}) has {size} entries "
                        f"along {axis!r} but another field has {sizes[axis]}; all "
                        "fields must share trajectory, time and space sizes"
                    )
        return sizes

    def _field_infos(self, handle: h5py.File) -> dict[str, FieldInfo]:
        infos = {}
        for name, spec in self.layout.fields.items():
            dataset = handle[spec.path]
            n_components = 1
            if COMPONENT in spec.axes:
                n_components = dataset.shape[spec.axes.index(COMPONENT)]
            units = spec.units or _attribute_text(dataset.attrs.get("units", ""))
            long_name = spec.long_name or _attribute_text(
                dataset.attrs.get("long_name", name)
            )
            infos[name] = FieldInfo(name, n_components, units, long_name)
        return infos

    def _parameter_units(self, handle: h5py.File) -> dict[str, str]:
        units = {}
        for name, spec in self.layout.parameters.items():
            text = spec.units or ""
            dataset = handle.get(spec.path) if spec.path is not None else None
            if not text and dataset is not None:
                text = _attribute_text(dataset.attrs.get("units", ""))
            units[name] = text
        return units

    @staticmethod
    def _check_same_sizes(path: Path, first: dict, sizes: dict) -> None:
        for axis, size in sizes.items():
            if axis != TRAJECTORY and first.get(axis) != size:
                raise DataFileError(
                    f"{path}: axis {axis!r} has {size} entries but the first file has "
                    f"{first.get(axis)}; files of one dataset must share time and "
                    "space sizes"
                )

    def _read_parameter(
        self, handle: h5py.File, spec: ParameterSpec, name: str, n_local: int
    ) -> list[float]:
        where = f"{handle.filename}: parameter {name!r}"
        if spec.value is not None:
            return [float(spec.value)] * n_local
        if spec.attribute is not None:
            if spec.attribute not in handle.attrs:
                raise DataFileError(
                    f"{where}: root attribute {spec.attribute!r} not found; "
                    f"attributes are {sorted(handle.attrs)}"
                )
            raw = handle.attrs[spec.attribute]
            try:
                value = float(json.loads(raw) if isinstance(raw, str | bytes) else raw)
            except (TypeError, ValueError, json.JSONDecodeError):
                raise DataFileError(
                    f"{where}: attribute {spec.attribute!r} = {raw!r} is not a number"
                ) from None
            return [value] * n_local
        values = np.asarray(_dataset(handle, spec.path, f"parameter {name!r}")[()])
        values = values.reshape(-1) if values.ndim else np.full(n_local, values)
        if values.shape != (n_local,):
            raise DataFileError(
                f"{where}: dataset {spec.path!r} has {values.size} values but the "
                f"file holds {n_local} trajectories"
            )
        if not np.all(np.isfinite(values)):
            raise NonFiniteValueError(
                f"{where}: dataset {spec.path!r} contains NaN or inf at trajectory "
                f"{int(np.flatnonzero(~np.isfinite(values))[0])}"
            )
        return values.astype(np.float64).tolist()

    def _read_grid(self, handle: h5py.File, sizes: dict[str, int]) -> dict[str, dict]:
        grid = {}
        for axis in (TIME, *self.layout.space):
            spec = self.layout.grid.get(axis, AxisSpec())
            grid[axis] = self._axis_coordinates(handle, axis, spec, sizes[axis])
        return grid

    @staticmethod
    def _axis_coordinates(
        handle: h5py.File, axis: str, spec: AxisSpec, size: int
    ) -> dict:
        units = spec.units or ""
        if spec.path is not None:
            dataset = _dataset(handle, spec.path, f"grid axis {axis!r}")
            values = np.asarray(dataset[()], dtype=np.float64).reshape(-1)
            if values.size != size:
                raise DataFileError(
                    f"{handle.filename}: grid axis {axis!r} ({spec.path}) has "
                    f"{values.size} values but the fields have {size} along it"
                )
            units = spec.units or _attribute_text(dataset.attrs.get("units", ""))
        elif spec.bounds is not None:
            low, high = spec.bounds
            step = (high - low) / size
            values = low + step * (np.arange(size) + 0.5)
        else:
            values = np.arange(size, dtype=np.float64)
        return {"values": values, "units": units}

    # reading

    def _handle(self, file_index: int) -> h5py.File:
        if self._pid != os.getpid():
            # A forked child inherits the parent's handles; never use them.
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(file_index)
        if handle is None:
            handle = open_hdf5(self.files[file_index])
            self._handles[file_index] = handle
        return handle

    def close(self) -> None:
        """Close every file handle this process opened."""
        if self._pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def read(self, field: str, trajectory: int, times: slice) -> np.ndarray:
        """Read one field of one trajectory at the given time indices.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_times, n_components, *space)``, float32.

        Raises
        ------
        NonFiniteValueError
            If the values contain NaN or inf; the message names file, dataset and
            the first offending index.
        """
        spec = self.layout.fields[field]
        file_index, local = self._trajectories[trajectory]
        dataset = self._handle(file_index)[spec.path]
        index = tuple(self._index_for(axis, spec, local, times) for axis in spec.axes)
        values = self._to_model_layout(dataset[index], spec)
        if not np.isfinite(values).all():
            self._raise_non_finite(values, field, spec, trajectory, times)
        return values

    @staticmethod
    def _index_for(axis: str, spec: FieldSpec, local: int, times: slice):
        if axis == TRAJECTORY:
            return local
        if axis == TIME:
            return times
        if axis in spec.select:
            return spec.select[axis]
        return slice(None)

    def _to_model_layout(self, values: np.ndarray, spec: FieldSpec) -> np.ndarray:
        kept = [a for a in spec.axes if a != TRAJECTORY and a not in spec.select]
        if COMPONENT not in kept:
            values = values[..., np.newaxis]
            kept.append(COMPONENT)
        order = [kept.index(a) for a in (TIME, COMPONENT, *self.layout.space)]
        return np.ascontiguousarray(values.transpose(order), dtype=np.float32)

    def _raise_non_finite(
        self, values: np.ndarray, field: str, spec: FieldSpec, trajectory: int, times
    ) -> None:
        bad = np.argwhere(~np.isfinite(values))
        count = len(bad)
        t, _, *space = bad[0]
        file_index, local = self._trajectories[trajectory]
        time_index = range(self.n_times)[times][t]
        position = dict(zip(self.layout.space, (int(s) for s in space), strict=True))
        raise NonFiniteValueError(
            f"{self.files[file_index]}: dataset {spec.path!r} (field {field!r}) holds "
            f"{count} NaN or inf values in trajectory {local} at times "
            f"{times.start}:{times.stop}; the first is {values[tuple(bad[0])]} at "
            f"time index {time_index}, {position}. Fix or drop that trajectory in "
            "the solver output before training."
        )

    def read_trajectory(self, field: str, trajectory: int) -> np.ndarray:
        """Read all times of one field of one trajectory, ``(T, C, *space)``."""
        return self.read(field, trajectory, slice(None))

    def describe(self) -> dict:
        """Return the resolved metadata as plain data (for checkpoints and reports)."""
        return {
            "files": [str(p) for p in self.files],
            "n_trajectories": self.n_trajectories,
            "n_times": self.n_times,
            "space": dict(zip(self.layout.space, self.space_shape, strict=True)),
            "fields": {
                k: {
                    "n_components": v.n_components,
                    "units": v.units,
                    "long_name": v.long_name,
                }
                for k, v in self.fields.items()
            },
            "parameters": dict(self.parameter_units),
        }
