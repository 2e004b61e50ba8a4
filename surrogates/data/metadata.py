"""Metadata of one file read through a layout: sizes, parameters, units and grids.

Only attributes, shapes and small 1D datasets are read here; field values never are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from surrogates.data.files import (
    DataFileError,
    NonFiniteValueError,
    attribute_numbers,
    attribute_text,
    check_dimension_names,
    open_hdf5,
    require_dataset,
    root_attribute,
)
from surrogates.data.layout import (
    COMPONENT,
    TIME,
    TRAJECTORY,
    AxisSpec,
    Layout,
    LayoutError,
    MaskSpec,
    ParameterSpec,
    compile_filename_regex,
)

# A decimal number as solvers print it in file names: 0.1, -2, 1., .5, 1e-3, 2.5E+04.
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class FieldInfo:
    """Resolved metadata of one field: sizes, units, kind."""

    name: str
    n_components: int
    units: str
    long_name: str


@dataclass(frozen=True)
class FileScan:
    """Contribution of one file: its sizes, parameters and, if read, its times.

    ``sizes`` maps ``trajectory`` (absent when fields have no trajectory axis),
    ``time`` (1 when fields have no time axis) and each spatial axis to its size.
    ``parameters`` contains one float64 value per trajectory of the file.
    """

    path: Path
    sizes: dict[str, int]
    parameters: dict[str, np.ndarray]
    times: np.ndarray | None = None

    @property
    def n_trajectories(self) -> int:
        """Trajectories in this file (1 when fields have no trajectory axis)."""
        return self.sizes.get(TRAJECTORY, 1)


def scan_file(path: Path, layout: Layout, *, read_times: bool) -> FileScan:
    """Read the sizes, parameters and (if ``read_times``) time coordinates of a file."""
    with open_hdf5(path, locking=layout.locking) as handle:
        sizes = field_sizes(handle, layout)
        n_local = sizes.get(TRAJECTORY, 1)
        parameters = {
            name: read_parameter(handle, spec, name, n_local)
            for name, spec in layout.parameters.items()
        }
        times = None
        if read_times:
            spec = layout.grid.get(TIME, AxisSpec())
            times = axis_coordinates(handle, TIME, spec, sizes[TIME])["values"]
    return FileScan(path, sizes, parameters, times)


def field_sizes(handle: h5py.File, layout: Layout) -> dict[str, int]:
    """Check every field's dataset against its axes and return the shared sizes."""
    sizes: dict[str, int] = {}
    for name, spec in layout.fields.items():
        where = f"field {name!r}"
        dataset = require_dataset(handle, spec.path, where)
        if dataset.ndim != len(spec.axes):
            raise LayoutError(
                f"{handle.filename}: dataset {spec.path!r} has shape "
                f"{dataset.shape} ({dataset.ndim} axes) but the layout gives "
                f"{len(spec.axes)} axes {list(spec.axes)} for {where}; list one "
                "role per axis, including axes of size 1"
            )
        check_dimension_names(dataset, spec.axes, where)
        for axis, size in zip(spec.axes, dataset.shape, strict=True):
            if axis in spec.select:
                if not 0 <= spec.select[axis] < size:
                    raise LayoutError(
                        f"{handle.filename}: dataset {spec.path!r} ({where}) has "
                        f"{size} entries along axis {axis!r}, so select: "
                        f"{{{axis}: {spec.select[axis]}}} is out of range; use an "
                        f"index from 0 to {size - 1}"
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
    sizes.setdefault(TIME, 1)
    return sizes


def field_infos(handle: h5py.File, layout: Layout) -> dict[str, FieldInfo]:
    """Return the number of components, units and long name of every field."""
    infos = {}
    for name, spec in layout.fields.items():
        dataset = handle[spec.path]
        n_components = 1
        if COMPONENT in spec.axes:
            n_components = dataset.shape[spec.axes.index(COMPONENT)]
        units = spec.units or attribute_text(dataset.attrs.get("units", ""))
        long_name = spec.long_name or attribute_text(
            dataset.attrs.get("long_name", name)
        )
        infos[name] = FieldInfo(name, n_components, units, long_name)
    return infos


def parameter_units(handle: h5py.File, layout: Layout) -> dict[str, str]:
    """Return each parameter's units: from the layout, else the dataset's attribute."""
    units = {}
    for name, spec in layout.parameters.items():
        text = spec.units or ""
        dataset = handle.get(spec.path) if spec.path is not None else None
        if not text and dataset is not None:
            text = attribute_text(dataset.attrs.get("units", ""))
        units[name] = text
    return units


def read_parameter(
    handle: h5py.File, spec: ParameterSpec, name: str, n_local: int
) -> np.ndarray:
    """Return one float64 value per trajectory of the file, ``(n_local,)``."""
    where = f"{handle.filename}: parameter {name!r}"
    if spec.value is not None:
        return np.full(n_local, float(spec.value))
    if spec.filename_regex is not None:
        values = np.array([value_from_filename(handle.filename, spec, name)])
        source = f"filename_regex {spec.filename_regex!r}"
    elif spec.attribute is not None:
        raw = root_attribute(handle, spec.attribute, f"parameter {name!r}")
        values = attribute_numbers(raw, f"{where}: attribute {spec.attribute!r}")
        source = f"attribute {spec.attribute!r}"
    else:
        dataset = require_dataset(handle, spec.path, f"parameter {name!r}")
        values = np.asarray(dataset[()], dtype=np.float64).reshape(-1)
        source = f"dataset {spec.path!r}"
    if values.size == 1:
        values = np.full(n_local, values[0])
    if values.shape != (n_local,):
        raise DataFileError(
            f"{where}: {source} has {values.size} values but the file contains "
            f"{n_local} trajectories; store one value per trajectory or one per file"
        )
    if not np.all(np.isfinite(values)):
        raise NonFiniteValueError(
            f"{where}: {source} contains NaN or inf at trajectory "
            f"{int(np.flatnonzero(~np.isfinite(values))[0])}"
        )
    return values


def value_from_filename(path: str | Path, spec: ParameterSpec, name: str) -> float:
    """Parse parameter ``name`` from the name of the file at ``path``.

    ``spec.filename_regex`` is searched for in the file name without its directory,
    and the text of its one capture group is parsed as a decimal number.

    Raises
    ------
    LayoutError
        If the regular expression does not compile or has no or several capture
        groups.
    DataFileError
        If it does not match the file name, or captures text that is not a number.
    """
    filename = Path(path).name
    where = f"{path}: parameter {name!r}"
    pattern = spec.filename_regex
    match = compile_filename_regex(pattern, where).search(filename)
    if match is None:
        raise DataFileError(
            f"{where}: filename_regex {pattern!r} does not match the file name "
            f"{filename!r}; fix the regular expression, or restrict 'files' to "
            "files whose names contain the parameter"
        )
    text = match.group(1)
    if text is None or NUMBER.fullmatch(text) is None:
        captured = "nothing" if text is None else repr(text)
        raise DataFileError(
            f"{where}: filename_regex {pattern!r} captures {captured} from the file "
            f"name {filename!r}, which is not a number; make the capture group "
            "cover only the number, e.g. end the expression with the text that "
            "follows it ('_' or '\\.hdf5')"
        )
    return float(text)


def read_grid(
    handle: h5py.File, layout: Layout, sizes: dict[str, int], axes: tuple[str, ...]
) -> dict[str, dict]:
    """Return ``{axis: {"values": float64 array, "units": str}}`` for ``axes``."""
    return {
        axis: axis_coordinates(
            handle, axis, layout.grid.get(axis, AxisSpec()), sizes[axis]
        )
        for axis in axes
    }


def axis_coordinates(handle: h5py.File, axis: str, spec: AxisSpec, size: int) -> dict:
    """Return the coordinates and units of one grid axis of ``size`` points."""
    units = spec.units or ""
    if spec.path is not None or spec.attribute is not None:
        if spec.path is not None:
            dataset = require_dataset(handle, spec.path, f"grid axis {axis!r}")
            source = f"dataset {spec.path!r}"
            values = np.asarray(dataset[()], dtype=np.float64).reshape(-1)
            units = units or attribute_text(dataset.attrs.get("units", ""))
        else:
            source = f"root attribute {spec.attribute!r}"
            raw = root_attribute(handle, spec.attribute, f"grid axis {axis!r}")
            values = attribute_numbers(raw, f"{handle.filename}: {source}")
        n_stored = values.size
        if spec.slice is not None:
            values = values[slice(*spec.slice)]
        if values.size != size:
            trimmed = ""
            if spec.slice is not None:
                trimmed = f" after slice {list(spec.slice)} ({n_stored} stored)"
            raise DataFileError(
                f"{handle.filename}: grid axis {axis!r} ({source}) has {values.size} "
                f"values{trimmed} but the fields have {size} along it; point 'path' "
                "at the right coordinates or trim them with 'slice', e.g. "
                "slice: [0, -1] to drop a trailing extra value"
            )
    elif spec.bounds is not None:
        low, high = spec.bounds
        step = (high - low) / size
        values = low + step * (np.arange(size) + 0.5)
    else:
        values = np.arange(size, dtype=np.float64)
    return {"values": values, "units": units}


def read_mask_dataset(
    handle: h5py.File, spec: MaskSpec, space: tuple[str, ...], shape: tuple[int, ...]
) -> np.ndarray:
    """Read a mask dataset as a bool array of ``shape``, True at valid points.

    Parameters
    ----------
    handle
        The open file that contains the dataset ``spec.path``.
    spec
        A mask of the ``path`` form, whose ``axes`` give the file order.
    space, shape
        The layout's spatial axes in model order and their sizes.

    Raises
    ------
    DataFileError
        If the dataset is missing or not numeric, contains NaN or inf, or does not
        match the spatial shape. The message names the file, path, shape and fix.
    """
    where = f"mask, masked where {spec.masked_where}"
    dataset = handle.get(spec.path)
    if not (isinstance(dataset, h5py.Dataset) and dataset.dtype.kind == "b"):
        dataset = require_dataset(handle, spec.path, where)
    expected = tuple(shape[space.index(axis)] for axis in spec.axes)
    if dataset.shape != expected:
        sizes = dict(zip(space, shape, strict=True))
        raise DataFileError(
            f"{handle.filename}: mask dataset {spec.path!r} has shape "
            f"{dataset.shape}, but the fields have {sizes} so "
            f"axes {list(spec.axes)} need shape {expected}; fix 'mask.axes' or "
            "'mask.path' in the layout"
        )
    values = np.asarray(dataset[()])
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataFileError(
            f"{handle.filename}: mask dataset {spec.path!r} contains "
            f"{int((~np.isfinite(values)).sum())} NaN or inf values; a mask holds "
            "0 and nonzero numbers, so fix the dataset or use mask: {nan_in: "
            "<field>} to mask a field's NaN points"
        )
    valid = values != 0 if spec.masked_where == "zero" else values == 0
    return np.ascontiguousarray(valid.transpose([spec.axes.index(a) for a in space]))
