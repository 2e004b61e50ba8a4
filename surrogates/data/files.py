"""HDF5 file access with clear errors: globbing, opening, datasets and attributes.

Attributes are decoded the same way whichever library wrote them: h5py and h5netcdf
store text as ``str``, fixed-length strings come back as ``bytes``, and some writers
wrap a single value in an array of shape ``()`` or ``(1,)``.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from surrogates.data.layout import LayoutError


class DataFileError(ValueError):
    """A data file that cannot be read as its layout describes."""


class NonFiniteValueError(DataFileError):
    """NaN or inf found in a field."""


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
        # Absolute but not resolved: a symbolic link keeps its own name, which a
        # layout may read parameters from.
        paths.extend(Path(os.path.abspath(m)) for m in matches)
    return paths


def open_hdf5(path: Path | str, *, locking: bool | None = None) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's errors into a clear message.

    ``locking=False`` opens the file without HDF5 file locks (h5py >= 3.5), as
    needed on file systems without lock support. ``None`` keeps h5py's default.
    The ``HDF5_USE_FILE_LOCKING=FALSE`` environment variable overrides either.
    """
    try:
        if locking is None:
            return h5py.File(path, "r")
        return h5py.File(path, "r", locking=locking)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except OSError as error:
        if "locking flag values don't match" in str(error):
            raise DataFileError(
                f"{path}: this process already has the file open with a file-locking "
                f"setting other than locking={locking!r} ({error}); open the file "
                "with the same 'locking' value everywhere in one process"
            ) from None
        message = str(error).lower()
        # HDF5 names the superblock "sblock" in truncation messages, so match the
        # lock failure itself rather than any "lock" substring.
        if "truncated file" not in message and (
            "unable to lock" in message or "lock file" in message
        ):
            raise DataFileError(
                f"{path}: cannot be opened because HDF5 failed to lock it ({error}). "
                "Another process may hold it open for writing, or the file system "
                "does not support file locks; set 'locking: false' in the layout "
                "or HDF5_USE_FILE_LOCKING=FALSE in the environment to read without "
                "locks."
            ) from None
        raise DataFileError(
            f"{path}: cannot be opened as HDF5 ({error}); the file may be truncated "
            "or still being written. Regenerate or re-copy it."
        ) from None


def damaged_file_error(filename: str, path: str, error: Exception) -> DataFileError:
    """Return the error for a dataset that exists but cannot be opened or read."""
    return DataFileError(
        f"{filename}: dataset {path!r} exists but HDF5 cannot read it ({error}); "
        "the file is probably truncated or damaged (for example copied while the "
        "solver was still writing it). Check it with h5dump or h5check, or write "
        "it again"
    )


def require_dataset(handle: h5py.File, path: str, where: str) -> h5py.Dataset:
    """Return the numeric dataset at ``path``, or raise naming file, path and fix."""
    if path not in handle:
        top = sorted(handle.keys())
        raise DataFileError(
            f"{handle.filename}: dataset {path!r} not found ({where}); top-level "
            f"groups and datasets are {top}. Fix 'path' in the layout config."
        )
    try:
        dataset = handle[path]
    except (KeyError, OSError) as error:
        raise damaged_file_error(handle.filename, path, error) from error
    if not isinstance(dataset, h5py.Dataset):
        raise DataFileError(
            f"{handle.filename}: {path!r} is a group, not a dataset ({where}); "
            f"it contains {sorted(dataset.keys())}. Name one of them in 'path'."
        )
    if dataset.dtype.kind not in "fiu":
        raise DataFileError(
            f"{handle.filename}: dataset {path!r} has non-numeric dtype "
            f"{dataset.dtype} ({where}); fields must be real numbers"
        )
    return dataset


def root_attribute(handle: h5py.File, name: str, where: str) -> object:
    """Return an attribute of the root group, or raise listing the attributes."""
    if name not in handle.attrs:
        raise DataFileError(
            f"{handle.filename}: root attribute {name!r} not found ({where}); the "
            f"root attributes are {sorted(handle.attrs)}. Fix 'attribute' in the "
            "layout config."
        )
    return handle.attrs[name]


def attribute_text(value: object) -> str:
    """Decode a text attribute: ``str``, ``bytes``, or an array of one of them."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return attribute_text(value.reshape(-1)[0])
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def attribute_numbers(raw: object, where: str) -> np.ndarray:
    """Return a numeric attribute as a 1D float64 array; text is parsed as JSON.

    Raises
    ------
    DataFileError
        If the value is neither a number, a list of numbers nor JSON text of one.
    """
    value = raw
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        if isinstance(value, str):
            value = json.loads(value)
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataFileError(
            f"{where} = {raw!r} is not a number or a list of numbers; store numbers "
            "or JSON text of numbers"
        ) from None


def dimension_names(dataset: h5py.Dataset) -> list[str | None] | None:
    """Return the dimension-scale name of each axis (as netCDF-4 files attach them).

    Returns None when the dataset has no ``DIMENSION_LIST``. The name of a scale is
    the last part of its dataset path, which netCDF-4 sets to the dimension name.
    """
    if "DIMENSION_LIST" not in dataset.attrs:
        return None
    names: list[str | None] = []
    for dimension in dataset.dims:
        scales = dimension.values()
        names.append(scales[0].name.rsplit("/", 1)[-1] if scales else None)
    return names


def check_dimension_names(dataset: h5py.Dataset, axes: Sequence[str], where: str):
    """Raise if a layout axis has a netCDF dimension's name at another position.

    Axis roles are never taken from the file. This only catches axes listed in the
    wrong order, such as ``[y, x]`` for a variable with dimensions ``(x, y)``.
    """
    names = dimension_names(dataset)
    if names is None:
        return
    for position, axis in enumerate(axes):
        if axis in names and names.index(axis) != position:
            raise LayoutError(
                f"{dataset.file.filename}: dataset {dataset.name!r} ({where}) has "
                f"dimensions {names}, but the layout puts axis {axis!r} at position "
                f"{position} of axes={list(axes)}; list the axes in the file's "
                "dimension order"
            )
