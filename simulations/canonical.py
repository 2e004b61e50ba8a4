"""Writer of the canonical HDF5 layout ("coolmathgans-1").

Layout of a file::

    /                  attrs: format, solver, solver_version, created, config,
                              n_spatial_dims, boundary, space_axes
    /fields/<name>     (n_trajectories, n_times, *space) for kind "scalar",
                       (n_trajectories, n_times, *space, n_components) for "vector"
                       attrs: units, long_name, kind, dims
    /parameters/<name> (n_trajectories,)    attrs: units, long_name
    /grid/time         (n_times,)           attrs: units
    /grid/<axis>       (n_axis,)            attrs: units
    /mask              (*space) uint8       optional: 1 inside the domain, 0 outside

Arrays are float32 and C-ordered, and fields are chunked one snapshot per chunk,
``(1, 1, *space[, n_components])``. The order of ``space`` is the order of the spatial
axes of every field, and the root attribute ``space_axes`` and each field's ``dims``
record it, so a reader never infers axes from array rank.

With a ``/mask``, field values at its 0 points (land, obstacles) may be NaN, and
every other value is finite. The file appears at its final path only when every
field and parameter has been written in full: until then it lives under a temporary
name in the same directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from simulations.canonical_checks import (
    COMPRESSIONS,
    as_float32,
    as_slice,
    check_array_shape,
    check_axis,
    check_field_specs,
    check_finite,
    check_parameter_specs,
    check_space,
    expand_selection,
    first_missing,
    text_attrs,
)

log = logging.getLogger(__name__)

FORMAT = "coolmathgans-1"
"""Value of the root attribute ``format`` of every canonical file."""


class CanonicalWriter:
    """Context manager that writes one canonical HDF5 file atomically.

    Parameters
    ----------
    path : str or Path
        Final file path. Parent directories are created.
    n_trajectories : int
        Number of trajectories (first axis of every field and parameter).
    time : array_like
        ``(n_times,)`` time of each snapshot, in ``time_units``.
    space : mapping of str to array_like
        Ordered spatial axes, for example ``{"y": y, "x": x}``, each ``(n_axis,)``.
        The order is the order of the spatial axes of the fields.
    fields : mapping of str to dict
        Field name to ``{"units", "long_name", "kind"}``, with ``"n_components"``
        when ``kind`` is ``"vector"``.
    parameters : mapping of str to dict
        Parameter name to ``{"units", "long_name"}``.
    solver, solver_version : str
        Name and version of the program that produced the data.
    time_units, space_units : str
        Units of ``/grid/time`` and of every spatial axis (``"1"`` if nondimensional).
    config_yaml : str
        YAML text of the run's configuration, stored in the root attribute ``config``.
    boundary : str
        Boundary condition of the spatial domain, for example ``"periodic"``.
    compression : {None, "gzip", "lzf"}
        HDF5 filter applied to the fields.
    attrs : mapping, optional
        Extra root attributes (strings or numbers). Reserved names are rejected.
    mask : array_like of bool, optional
        ``space``-shaped, True inside the domain. Written as ``/mask``; field
        values outside the domain may then be NaN.

    Examples
    --------
    >>> with CanonicalWriter(
    ...     path, n_trajectories=2, time=t, space={"x": x},
    ...     fields={"u": {"units": "m/s", "long_name": "speed", "kind": "scalar"}},
    ...     parameters={}, solver="demo", solver_version="0",
    ... ) as writer:
    ...     writer.write_field("u", u)  # (2, len(t), len(x))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_trajectories: int,
        time: Any,
        space: Mapping[str, Any],
        fields: Mapping[str, Mapping[str, Any]],
        parameters: Mapping[str, Mapping[str, Any]],
        solver: str,
        solver_version: str,
        time_units: str = "s",
        space_units: str = "m",
        config_yaml: str = "",
        boundary: str = "periodic",
        compression: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        mask: Any | None = None,
    ) -> None:
        if int(n_trajectories) != n_trajectories or n_trajectories < 1:
            raise ValueError(f"got n_trajectories={n_trajectories}; expected int >= 1")
        if compression not in COMPRESSIONS:
            raise ValueError(
                f"got compression={compression!r}; expected one of {COMPRESSIONS}"
            )
        self.path = Path(path)
        self.n_trajectories = int(n_trajectories)
        self.time = check_axis(time, "/grid/time")
        self.space = check_space(space)
        self.field_specs = check_field_specs(fields)
        self.parameter_specs = check_parameter_specs(parameters)
        self.compression = compression
        self.mask = None if mask is None else self._check_mask(mask)
        self._root_attrs = self._build_root_attrs(
            solver, solver_version, config_yaml, boundary, attrs
        )
        self._units = {"time": time_units, "space": space_units}
        self._temporary_path = self.path.with_name(
            f".{self.path.name}.partial-{os.getpid()}"
        )
        self._file: h5py.File | None = None
        self._written: dict[str, np.ndarray] = {}
        self._parameters_written: set[str] = set()

    @property
    def space_shape(self) -> tuple[int, ...]:
        """Number of points along each spatial axis, in ``space`` order."""
        return tuple(axis.size for axis in self.space.values())

    def field_shape(self, name: str) -> tuple[int, ...]:
        """Return the full shape of dataset ``/fields/<name>``."""
        spec = self.field_specs[name]
        shape = (self.n_trajectories, self.time.size, *self.space_shape)
        if spec["kind"] == "vector":
            shape = (*shape, spec["n_components"])
        return shape

    # lifecycle

    def __enter__(self) -> CanonicalWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._temporary_path, "w")
        try:
            self._create_layout(self._file)
        except BaseException:
            self._discard()
            raise
        log.debug("writing %s through %s", self.path, self._temporary_path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            log.warning(
                "discarded the partial file for %s after %s: %s",
                self.path, exc_type.__name__, exc,
            )  # fmt: skip
            return
        missing = self._missing_parts()
        if missing:
            self._discard()
            raise ValueError(
                f"incomplete canonical file {self.path}: {'; '.join(missing)}. Write "
                "every field and parameter inside the 'with' block; nothing was "
                f"written to {self.path}"
            )
        self._file.close()
        self._file = None
        os.replace(self._temporary_path, self.path)
        log.debug("wrote %s", self.path)

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temporary_path.unlink(missing_ok=True)

    # writing

    def write_field(
        self,
        name: str,
        data: Any,
        trajectories: int | slice | Any = slice(None),
        times: int | slice | Any = slice(None),
    ) -> None:
        """Write a block of snapshots of one field.

        Parameters
        ----------
        name : str
            A field declared in ``fields``.
        data : array_like
            Real values of shape ``(n_trajectories_selected, n_times_selected,
            *space[, n_components])``. An integer selection drops its axis, as in
            numpy indexing. Values are stored as float32.
        trajectories, times : int, slice or sequence of int
            Which trajectories and time indices ``data`` covers.

        Raises
        ------
        KeyError
            If ``name`` was not declared.
        ValueError
            If the shape is wrong, an index repeats, or a value is NaN or infinite.
        """
        dataset = self._dataset(f"fields/{name}", self.field_specs, name, "field")
        path = f"/fields/{name}"
        rows, rows_dropped = expand_selection(
            trajectories, self.n_trajectories, "trajectories"
        )
        columns, columns_dropped = expand_selection(times, self.time.size, "times")
        block_shape = (len(rows), len(columns), *dataset.shape[2:])
        expected = [*block_shape]
        for axis, dropped in ((1, columns_dropped), (0, rows_dropped)):
            if dropped:
                del expected[axis]
        values = as_float32(np.asarray(data), path)
        check_array_shape(values, tuple(expected), path)
        values = values.reshape(block_shape)
        # Outside a mask NaN is allowed; space axes follow trajectory and time.
        checked = values if self.mask is None else values[:, :, self.mask]
        check_finite(checked, path, self.path, rows, columns)

        # h5py takes increasing indices, one index list per write
        order = np.argsort(columns)
        columns, values = columns[order], values[:, order]
        time_selection = as_slice(columns)
        for position, row in enumerate(rows):
            dataset[row, time_selection] = values[position]
        self._written[name][np.ix_(rows, columns)] = True

    def write_parameter(self, name: str, values: Any) -> None:
        """Write all ``(n_trajectories,)`` values of one declared parameter."""
        path = f"/parameters/{name}"
        dataset = self._dataset(
            f"parameters/{name}", self.parameter_specs, name, "parameter"
        )
        array = as_float32(np.asarray(values), path)
        check_array_shape(array, (self.n_trajectories,), path)
        check_finite(array, path, self.path)
        dataset[...] = array
        self._parameters_written.add(name)

    # helpers

    def _build_root_attrs(
        self,
        solver: str,
        solver_version: str,
        config_yaml: str,
        boundary: str,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        root = {
            "format": FORMAT,
            "solver": str(solver),
            "solver_version": str(solver_version),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": str(config_yaml),
            "n_spatial_dims": len(self.space),
            "boundary": str(boundary),
            "space_axes": list(self.space),
        }
        clashes = sorted(set(extra or {}) & set(root))
        if clashes:
            raise ValueError(
                f"got attrs with reserved names {clashes}; rename them, because the "
                "writer sets these root attributes itself"
            )
        return {**root, **(extra or {})}

    def _check_mask(self, mask: Any) -> np.ndarray:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.space_shape:
            raise ValueError(
                f"mask has shape {mask.shape}; expected the space shape "
                f"{self.space_shape} of axes {list(self.space)}"
            )
        if not mask.any():
            raise ValueError("mask has no point inside the domain; expected some True")
        return mask

    def _create_layout(self, file: h5py.File) -> None:
        file.attrs.update(self._root_attrs)
        if self.mask is not None:
            mask = file.create_dataset("mask", data=self.mask.astype(np.uint8))
            mask.attrs["long_name"] = "1 inside the domain, 0 at masked points"
            mask.attrs["dims"] = list(self.space)
        grid = file.create_group("grid")
        grid.create_dataset("time", data=self.time).attrs["units"] = self._units["time"]
        for axis, coordinate in self.space.items():
            grid.create_dataset(axis, data=coordinate).attrs["units"] = self._units[
                "space"
            ]

        for name, spec in self.field_specs.items():
            shape = self.field_shape(name)
            dataset = file.create_dataset(
                f"fields/{name}",
                shape=shape,
                dtype=np.float32,
                chunks=(1, 1, *shape[2:]),
                compression=self.compression,
            )
            dims = ["trajectory", "time", *self.space]
            if spec["kind"] == "vector":
                dims.append("component")
            dataset.attrs.update({**text_attrs(spec), "dims": dims})
            self._written[name] = np.zeros(shape[:2], dtype=bool)

        for name, spec in self.parameter_specs.items():
            dataset = file.create_dataset(
                f"parameters/{name}", shape=(self.n_trajectories,), dtype=np.float32
            )
            dataset.attrs.update(text_attrs(spec))

    def _dataset(
        self, key: str, specs: Mapping[str, Any], name: str, kind: str
    ) -> h5py.Dataset:
        if self._file is None:
            raise RuntimeError(
                f"CanonicalWriter for {self.path} is not open; call write_{kind} "
                "inside a 'with CanonicalWriter(...) as writer:' block"
            )
        if name not in specs:
            raise KeyError(
                f"unknown {kind} {name!r} for {self.path}; declared {kind}s are "
                f"{sorted(specs)}, so add it to the {kind}s argument of CanonicalWriter"
            )
        return self._file[key]

    def _missing_parts(self) -> list[str]:
        missing = []
        for name, written in self._written.items():
            if not written.all():
                row, column = first_missing(written)
                missing.append(
                    f"field {name!r} lacks {int((~written).sum())} of {written.size} "
                    f"snapshots (first: trajectory {row}, time index {column})"
                )
        for name in sorted(set(self.parameter_specs) - self._parameters_written):
            missing.append(f"parameter {name!r} was never written")
        return missing


def write_canonical(
    path: str | os.PathLike,
    *,
    fields: Mapping[str, Any],
    parameters: Mapping[str, Any],
    time: Any,
    space: Mapping[str, Any],
    field_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    parameter_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    solver: str = "unknown",
    solver_version: str = "unknown",
    **writer_options: Any,
) -> Path:
    """Write in-memory arrays to a canonical file in one call.

    Parameters
    ----------
    path : str or Path
        Final file path.
    fields : mapping of str to array_like
        Field name to ``(n_trajectories, n_times, *space)`` (scalar) or
        ``(n_trajectories, n_times, *space, n_components)`` (vector) values.
    parameters : mapping of str to array_like
        Parameter name to ``(n_trajectories,)`` values.
    time, space
        As for ``CanonicalWriter``.
    field_attrs, parameter_attrs : mapping, optional
        Per-name ``units`` and ``long_name`` (and for fields ``kind``). Missing
        entries default to units ``"1"``, the name as ``long_name``, and a kind read
        from the array rank, since ``space`` fixes the number of spatial axes.
    solver, solver_version : str
        Stored as root attributes.
    **writer_options
        Other keyword arguments of ``CanonicalWriter`` (``time_units``,
        ``space_units``, ``config_yaml``, ``boundary``, ``compression``, ``attrs``).

    Returns
    -------
    Path
        The written file.
    """
    arrays = {name: np.asarray(values) for name, values in fields.items()}
    if not arrays:
        raise ValueError("got no fields; pass at least one array in fields")
    n_trajectories = next(iter(arrays.values())).shape[0]
    n_space = len(space)
    field_specs = {}
    for name, array in arrays.items():
        spec = {"units": "1", "long_name": name}
        spec["kind"] = "vector" if array.ndim == n_space + 3 else "scalar"
        spec.update((field_attrs or {}).get(name, {}))
        if spec["kind"] == "vector":
            spec.setdefault("n_components", int(array.shape[-1]))
        field_specs[name] = spec
    parameter_specs = {
        name: {"units": "1", "long_name": name, **(parameter_attrs or {}).get(name, {})}
        for name in parameters
    }

    with CanonicalWriter(
        path,
        n_trajectories=n_trajectories,
        time=time,
        space=space,
        fields=field_specs,
        parameters=parameter_specs,
        solver=solver,
        solver_version=solver_version,
        **writer_options,
    ) as writer:
        for name, array in arrays.items():
            writer.write_field(name, array)
        for name, values in parameters.items():
            writer.write_parameter(name, values)
    return Path(path)
