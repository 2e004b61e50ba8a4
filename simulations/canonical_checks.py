"""Validation helpers of ``simulations.canonical.CanonicalWriter``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

COMPRESSIONS = (None, "gzip", "lzf")
"""HDF5 filters accepted for field datasets."""

FIELD_KINDS = ("scalar", "vector")
"""Accepted values of a field's ``kind`` attribute."""

SPACE_AXES = ("x", "y", "z")
"""Names a spatial axis may take, as ``/grid/<axis>``."""


def as_float32(array: np.ndarray, path: str) -> np.ndarray:
    """Return a C-ordered float32 copy of a real numeric array, or raise ValueError."""
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"got {path} values of dtype {array.dtype}; expected real numbers (float "
            "or integer), so convert complex, boolean or object data first"
        )
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


def check_array_shape(array: np.ndarray, expected: tuple[int, ...], path: str) -> None:
    """Raise ValueError unless ``array.shape == expected``."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(
            f"got {path} values of shape {tuple(array.shape)}; expected {expected}"
        )


def check_finite(
    values: np.ndarray,
    path: str,
    file_path: Any,
    rows: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> None:
    """Raise ValueError naming the first NaN or infinite value of a block.

    ``rows`` and ``columns`` map the first two axes of ``values`` to trajectory and
    time indices in the file, so the message gives the index in the file.
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    index = [int(i) for i in np.argwhere(bad)[0]]
    if rows is not None:
        index[0] = int(rows[index[0]])
    if columns is not None:
        index[1] = int(columns[index[1]])
    raise ValueError(
        f"{path} in {file_path}: {int(bad.sum())} NaN or infinite values after "
        f"conversion to float32, the first at file index {tuple(index)}. The solver "
        "probably diverged (reduce its time step or check its parameters) or the "
        "values exceed the float32 range; fix the data before writing it"
    )


def check_space(space: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Return the spatial axes as float32 1D arrays, in the given order."""
    if not 1 <= len(space) <= 3:
        raise ValueError(f"got {len(space)} spatial axes; expected 1 to 3")
    axes = {}
    for axis, values in space.items():
        if axis not in SPACE_AXES:
            raise ValueError(f"got spatial axis {axis!r}; expected one of {SPACE_AXES}")
        axes[axis] = check_axis(values, f"/grid/{axis}")
    return axes


def check_axis(values: Any, path: str) -> np.ndarray:
    """Return grid coordinates as a float32 1D array; raise if empty or not finite."""
    array = as_float32(np.asarray(values), path)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(
            f"got {path} of shape {array.shape}; expected a non-empty 1D array"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"got {path} with NaN or infinite coordinates: {array}")
    return array


def check_field_specs(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """Return validated field specifications, raising on missing or wrong keys."""
    if not fields:
        raise ValueError("got no fields; a canonical file needs at least one field")
    specs = {}
    for name, spec in fields.items():
        _check_name(name, "field")
        _check_keys(
            spec, {"units", "long_name", "kind"}, f"field {name!r}", {"n_components"}
        )
        kind = spec["kind"]
        if kind not in FIELD_KINDS:
            raise ValueError(
                f"got kind={kind!r} for field {name!r}; expected one of {FIELD_KINDS}"
            )
        cleaned = {key: str(spec[key]) for key in ("units", "long_name", "kind")}
        if kind == "vector":
            n_components = spec.get("n_components")
            if not isinstance(n_components, (int, np.integer)) or n_components < 1:
                raise ValueError(
                    f"got n_components={n_components!r} for vector field {name!r}; "
                    "expected an integer >= 1"
                )
            cleaned["n_components"] = int(n_components)
        specs[name] = cleaned
    return specs


def check_parameter_specs(
    parameters: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict]:
    """Return validated parameter specifications with ``units`` and ``long_name``."""
    specs = {}
    for name, spec in parameters.items():
        _check_name(name, "parameter")
        _check_keys(spec, {"units", "long_name"}, f"parameter {name!r}")
        specs[name] = {key: str(spec[key]) for key in ("units", "long_name")}
    return specs


def expand_selection(selection: Any, size: int, name: str) -> tuple[np.ndarray, bool]:
    """Turn an int, slice or index sequence into unique indices into ``range(size)``.

    Returns the ``(n,)`` int64 indices and whether the selection was a single
    integer, whose axis the data then omits.
    """
    try:
        indices = np.arange(size)[selection]
    except (IndexError, TypeError) as error:
        raise ValueError(
            f"got {name}={selection!r}; expected an int, slice or sequence of ints "
            f"within 0..{size - 1}"
        ) from error
    dropped = np.ndim(indices) == 0
    indices = np.atleast_1d(indices).astype(np.int64)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"got {name}={selection!r}; it selects no indices")
    if np.unique(indices).size != indices.size:
        raise ValueError(f"got {name}={selection!r}; each index may appear only once")
    return indices, dropped


def as_slice(indices: np.ndarray) -> slice | np.ndarray:
    """Return a step-1 slice for increasing consecutive indices, else the indices."""
    if np.array_equal(indices, np.arange(indices[0], indices[-1] + 1)):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def first_missing(written: np.ndarray) -> tuple[int, int]:
    """Return (trajectory, time index) of the first False entry of ``written``."""
    row, column = np.argwhere(~written)[0]
    return int(row), int(column)


def text_attrs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return the entries of a field specification stored as HDF5 attributes."""
    return {key: value for key, value in spec.items() if key != "n_components"}


def _check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(
            f"got {kind} name {name!r}; expected a non-empty string without '/' "
            "that does not start with '.'"
        )


def _check_keys(
    spec: Mapping[str, Any],
    required: set[str],
    description: str,
    optional: frozenset[str] | set[str] = frozenset(),
) -> None:
    missing = sorted(required - set(spec))
    if missing:
        raise ValueError(f"{description} lacks {missing}; give {sorted(required)}")
    unknown = sorted(set(spec) - required - set(optional))
    if unknown:
        raise ValueError(
            f"{description} has unknown keys {unknown}; expected only "
            f"{sorted(required | set(optional))}"
        )
