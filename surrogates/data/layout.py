"""Layout configs: where each field, parameter and grid axis lives in a solver's HDF5.

A layout names, for every array, its dataset path and the role of every axis. Nothing
is guessed from array rank: an axis whose role is not stated is an error.

Axis roles are ``trajectory``, ``time``, ``component`` (the components of a vector
field), one of the layout's spatial axis names (``space``), or any other label that is
fixed to one index by ``select`` (for example the axis along which a solver stacks
several fields in one dataset).

Files are joined along trajectories (``join: trajectory``, the default: each file adds
its trajectories) or along time (``join: time``: the files matched by one pattern of
``files`` are consecutive pieces of the same trajectories, ordered by their time
coordinates).

A parameter comes from a dataset (``path``), a root attribute (``attribute``), a
constant (``value``) or the file's name (``filename_regex``), for solvers that keep a
run's parameters only there, such as PDEBench's ``2D_CFD_M0.1_Eta0.01_...hdf5``. The
regular expression is searched for in the file name without its directory and has
exactly one capture group, whose text is parsed as a float and given to every
trajectory of that file: ``M: {filename_regex: '_M([0-9.eE+-]+)_'}``.

A static ``mask`` marks the grid points outside the domain (land in an ocean model,
the inside of an obstacle), where solvers often store NaN or fill values. It comes
from a dataset over the spatial axes (``mask: {path: mask, axes: [x, y]}``) or from
the points where a field is NaN or inf in its first snapshot (``mask: {nan_in: u}``);
see :class:`MaskSpec`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

TRAJECTORY = "trajectory"
TIME = "time"
COMPONENT = "component"
RESERVED_ROLES = (TRAJECTORY, TIME, COMPONENT)
JOIN_MODES = (TRAJECTORY, TIME)
MASKED_WHERE = ("zero", "nonzero")


class LayoutError(ValueError):
    """A layout config that is inconsistent in itself or with the files it describes."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Location of one field: dataset path, the role of each axis, fixed indices."""

    path: str
    axes: tuple[str, ...]
    select: Mapping[str, int] = dataclasses.field(default_factory=dict)
    units: str | None = None
    long_name: str | None = None


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """Location of one scalar parameter per trajectory.

    Exactly one of ``path`` (a dataset of shape ``(n_trajectories,)``, or of shape
    ``()`` or ``(1,)`` holding one value for the whole file), ``attribute`` (an
    attribute of the file's root group, numbers or JSON text), ``value`` (a
    constant) and ``filename_regex`` is set.

    ``filename_regex`` is a regular expression searched for (as by ``re.search``)
    in the file's name without its directory. It has exactly one capture group, and
    the captured text, a decimal number such as ``0.1``, ``-2`` or ``1e-3``, is the
    value for every trajectory of that file. ``'_M([0-9.eE+-]+)_'`` reads 0.1 from
    ``2D_CFD_M0.1_Eta0.01_Zeta0.01_Train.hdf5``. Files joined along time must all
    give the same value. A symbolic link is matched by its own name.
    """

    path: str | None = None
    attribute: str | None = None
    value: float | None = None
    filename_regex: str | None = None
    units: str | None = None
    long_name: str | None = None


@dataclasses.dataclass(frozen=True)
class AxisSpec:
    """Coordinates of one grid axis (``time`` or a spatial axis).

    ``path`` names a 1D dataset and ``attribute`` an attribute of the file's root
    group (one number per file when files are joined along time, else a 1D array).
    ``bounds`` gives ``[low, high]`` for cell-centred coordinates on a uniform grid.
    With none, coordinates are the integer indices. ``attribute`` excludes the other
    two, and ``path`` is used when both ``path`` and ``bounds`` are set.
    ``slice`` is ``[start, stop]`` or ``[start, stop, step]`` with Python's slice
    semantics: negative counts from the end and ``null`` is an open end. It trims the
    values of ``path`` or ``attribute`` before their length is checked against the
    fields, so ``[0, -1]`` drops a trailing extra coordinate.
    """

    path: str | None = None
    attribute: str | None = None
    bounds: tuple[float, float] | None = None
    slice: tuple[int | None, ...] | None = None
    units: str | None = None


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Source of the static mask of grid points outside the domain.

    The mask is the same for every trajectory and time. Exactly one of two forms
    is set:

    - ``path`` names a dataset over the spatial axes, whose ``axes`` list the
      layout's spatial axis names in the dataset's order. ``masked_where`` is
      ``"zero"`` (the default: 0 marks a masked point, as in an ocean mask of 1s)
      or ``"nonzero"`` (any other value marks a masked point, as in a land mask
      of 1s).
    - ``nan_in`` names a field: a point is masked where any component of that
      field is NaN or inf at the first time of the first trajectory of the first
      file.
    """

    path: str | None = None
    axes: tuple[str, ...] | None = None
    masked_where: str = "zero"
    nan_in: str | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """A complete layout: files, fields, parameters and grid.

    ``space`` lists the spatial axis names in model order, so ``space[0]`` becomes the
    height axis ``H`` and ``space[1]`` the width axis ``W`` of ``(B, C, H, W)``.
    ``join`` is ``"trajectory"`` (each file adds its trajectories) or ``"time"``
    (the files matched by one pattern of ``files`` hold consecutive times of the same
    trajectories, and each pattern adds trajectories).

    Two options set how files are read, not what they contain. ``locking`` is passed
    to ``h5py.File(..., locking=...)``: ``False`` opens files without HDF5 file
    locks, for file systems that do not support them (some NFS, Lustre and GPFS
    mounts); ``None`` keeps h5py's default. The environment variable
    ``HDF5_USE_FILE_LOCKING=FALSE`` overrides either. ``cache_bytes`` caps the
    HDF5 chunk caches of one process, in bytes (``None``: 64 MiB).

    ``mask`` (a :class:`MaskSpec`, or ``None`` when every point is in the domain)
    marks static grid points outside the domain. Values at those points are not
    checked for NaN or inf, not used in normalization statistics or evaluation
    metrics, and are set to 0 in normalized samples.
    """

    files: tuple[str, ...]
    space: tuple[str, ...]
    fields: Mapping[str, FieldSpec]
    parameters: Mapping[str, ParameterSpec] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, AxisSpec] = dataclasses.field(default_factory=dict)
    name: str = "dataset"
    join: str = TRAJECTORY
    locking: bool | None = None
    cache_bytes: int | None = None
    mask: MaskSpec | None = None

    def __post_init__(self) -> None:
        if not self.files:
            raise LayoutError(
                f"layout {self.name!r}: 'files' is empty; list HDF5 paths"
            )
        if not self.fields:
            raise LayoutError(f"layout {self.name!r}: 'fields' is empty; name a field")
        if self.join not in JOIN_MODES:
            raise LayoutError(
                f"layout {self.name!r}: join={self.join!r} is not one of "
                f"{list(JOIN_MODES)}"
            )
        if self.locking not in (None, True, False):
            raise LayoutError(
                f"layout {self.name!r}: locking={self.locking!r} is not true, false "
                "or null"
            )
        if self.cache_bytes is not None and (
            isinstance(self.cache_bytes, bool)
            or not isinstance(self.cache_bytes, int)
            or self.cache_bytes < 1
        ):
            raise LayoutError(
                f"layout {self.name!r}: cache_bytes={self.cache_bytes!r} is not a "
                "positive number of bytes; set e.g. 67108864 (64 MiB) or null"
            )
        for name, spec in self.fields.items():
            _check_field_axes(self, name, spec)
        for name, spec in self.parameters.items():
            _check_parameter(self, name, spec)
        unknown = set(self.grid) - {TIME, *self.space}
        if unknown:
            raise LayoutError(
                f"layout {self.name!r}: grid axes {sorted(unknown)} are not 'time' or "
                f"a spatial axis {list(self.space)}"
            )
        for axis, spec in self.grid.items():
            _check_grid_axis(self, axis, spec)
        if self.mask is not None:
            _check_mask(self, self.mask)
        time = self.grid.get(TIME, AxisSpec())
        if self.join == TIME and time.path is None and time.attribute is None:
            raise LayoutError(
                f"layout {self.name!r}: join: time orders files by their times, so "
                "grid.time needs 'attribute' (one time per file, a root attribute) "
                "or 'path' (a dataset of the file's times)"
            )

    @property
    def has_trajectory_axis(self) -> bool:
        """Whether the fields have a trajectory axis (else each file is one)."""
        return TRAJECTORY in next(iter(self.fields.values())).axes

    def to_dict(self) -> dict[str, Any]:
        """Return the layout as plain data, as accepted by :func:`layout_from_dict`."""
        return _strip_none(dataclasses.asdict(self))


def _check_field_axes(layout: Layout, name: str, spec: FieldSpec) -> None:
    where = f"layout {layout.name!r}, field {name!r} ({spec.path})"
    if len(set(spec.axes)) != len(spec.axes):
        raise LayoutError(f"{where}: repeated axis name in axes={list(spec.axes)}")
    # Files joined along time may hold one snapshot each, without a time axis.
    needed = layout.space if layout.join == TIME else (TIME, *layout.space)
    missing = [axis for axis in needed if axis not in spec.axes]
    if missing:
        needs = f"the spatial axes {list(layout.space)}"
        if layout.join != TIME:
            needs = f"a 'time' axis and {needs}"
        raise LayoutError(
            f"{where}: axes={list(spec.axes)} lacks {missing}; every field needs "
            f"{needs}"
        )
    known = {*RESERVED_ROLES, *layout.space}
    for axis in spec.axes:
        if axis not in known and axis not in spec.select:
            raise LayoutError(
                f"{where}: axis {axis!r} is not one of {sorted(known)}; fix the name "
                f"or fix it to one index with select: {{{axis}: 0}}"
            )
    for axis in spec.select:
        if axis not in spec.axes or axis in known:
            raise LayoutError(
                f"{where}: select names {axis!r}, which is not a free axis label of "
                f"axes={list(spec.axes)}"
            )
    first = next(iter(layout.fields.values()))
    for role in (TRAJECTORY, TIME):
        if (role in spec.axes) != (role in first.axes):
            raise LayoutError(
                f"{where}: either every field or no field has a {role!r} axis"
            )


def _check_parameter(layout: Layout, name: str, spec: ParameterSpec) -> None:
    where = f"layout {layout.name!r}, parameter {name!r}"
    sources = (spec.path, spec.attribute, spec.value, spec.filename_regex)
    n_sources = sum(source is not None for source in sources)
    if n_sources != 1:
        raise LayoutError(
            f"{where}: must set exactly one of 'path', 'attribute', 'value' or "
            f"'filename_regex', got {n_sources}"
        )
    if spec.filename_regex is not None:
        compile_filename_regex(spec.filename_regex, where)


def compile_filename_regex(pattern: str, where: str) -> re.Pattern:
    """Compile a parameter's ``filename_regex`` and check its one capture group.

    Raises
    ------
    LayoutError
        If ``pattern`` is not a string, does not compile, or has no or several
        capture groups. The message starts with ``where``.
    """
    example = "e.g. '_M([0-9.eE+-]+)_' for '..._M0.1_...'"
    if not isinstance(pattern, str):
        raise LayoutError(
            f"{where}: filename_regex={pattern!r} is not a string; quote the "
            f"regular expression, {example}"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise LayoutError(
            f"{where}: filename_regex {pattern!r} is not a valid regular "
            f"expression ({error}); fix it, {example}"
        ) from error
    if compiled.groups != 1:
        raise LayoutError(
            f"{where}: filename_regex {pattern!r} has {compiled.groups} capture "
            "groups, expected exactly 1 around the number; write other groups as "
            f"non-capturing (?:...), {example}"
        )
    return compiled


def _check_grid_axis(layout: Layout, axis: str, spec: AxisSpec) -> None:
    where = f"layout {layout.name!r}, grid axis {axis!r}"
    if spec.attribute is not None and (spec.path or spec.bounds):
        raise LayoutError(
            f"{where}: sets 'attribute' together with 'path' or 'bounds'; set one "
            "source of coordinates"
        )
    if spec.slice is None:
        return
    if spec.path is None and spec.attribute is None:
        raise LayoutError(
            f"{where}: 'slice' trims the values of 'path' or 'attribute'; set one of "
            "them or remove 'slice'"
        )
    step = spec.slice[2] if len(spec.slice) == 3 else 1
    if len(spec.slice) not in (2, 3) or (step is not None and step < 1):
        raise LayoutError(
            f"{where}: slice={list(spec.slice)} is not [start, stop] or "
            "[start, stop, step] with a positive step"
        )


def _check_mask(layout: Layout, spec: MaskSpec) -> None:
    where = f"layout {layout.name!r}, mask"
    forms = "mask: {path: <dataset>, axes: [...]} or mask: {nan_in: <field>}"
    if (spec.path is None) == (spec.nan_in is None):
        both_or_neither = "both" if spec.path is not None else "neither"
        raise LayoutError(
            f"{where}: sets {both_or_neither} of 'path' and 'nan_in'; set exactly "
            f"one, {forms}"
        )
    if spec.nan_in is not None:
        if spec.nan_in not in layout.fields:
            raise LayoutError(
                f"{where}: nan_in={spec.nan_in!r} is not a field of the layout; "
                f"name one of {sorted(layout.fields)}"
            )
        if spec.axes is not None:
            raise LayoutError(
                f"{where}: 'axes' belongs to mask: {{path: ...}}; remove it, since "
                f"nan_in={spec.nan_in!r} takes the axes of that field"
            )
        return
    if spec.axes is None:
        raise LayoutError(
            f"{where}: dataset {spec.path!r} needs 'axes', its spatial axes in "
            f"file order, e.g. axes: {list(layout.space)}"
        )
    if sorted(spec.axes) != sorted(layout.space):
        raise LayoutError(
            f"{where}: dataset {spec.path!r} has axes={list(spec.axes)}, expected "
            f"each of the spatial axes {list(layout.space)} once, in file order"
        )
    if spec.masked_where not in MASKED_WHERE:
        raise LayoutError(
            f"{where}: masked_where={spec.masked_where!r} is not one of "
            f"{list(MASKED_WHERE)}; 'zero' masks points stored as 0 (ocean mask "
            "of 1s), 'nonzero' masks the others (land mask of 1s)"
        )


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_strip_none(v) for v in value]
    return value


def _build(cls: type, where: str, raw: Mapping[str, Any] | None) -> Any:
    raw = dict(raw or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise LayoutError(
            f"{where}: unknown keys {sorted(unknown)}; allowed keys are {sorted(names)}"
        )
    for key in ("axes", "bounds"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    if raw.get("slice") is not None:
        raw["slice"] = tuple(None if v is None else int(v) for v in raw["slice"])
    if raw.get("select") is not None:
        raw["select"] = {str(k): int(v) for k, v in raw["select"].items()}
    return cls(**raw)


def layout_from_dict(raw: Mapping[str, Any]) -> Layout:
    """Build a :class:`Layout` from plain data (a parsed YAML layout config).

    Raises
    ------
    LayoutError
        On unknown keys, missing sections or inconsistent axis roles; the message
        names the key and the allowed values.
    """
    raw = dict(raw)
    name = str(raw.get("name", "dataset"))
    for key in ("files", "space", "fields"):
        if key not in raw or raw[key] is None:
            raise LayoutError(f"layout {name!r}: missing required key {key!r}")
    files = raw["files"]
    if isinstance(files, str):
        files = [files]
    allowed = {"name", "files", "space", "fields", "parameters", "grid", "join"}
    allowed |= {"locking", "cache_bytes", "mask"}
    unknown = set(raw) - allowed
    if unknown:
        raise LayoutError(
            f"layout {name!r}: unknown keys {sorted(unknown)}; allowed keys are "
            f"{sorted(allowed)}"
        )
    return Layout(
        name=name,
        join=str(raw.get("join") or TRAJECTORY),
        locking=raw.get("locking"),
        cache_bytes=raw.get("cache_bytes"),
        mask=_build_mask(name, raw.get("mask")),
        files=tuple(str(f) for f in files),
        space=tuple(_as_names(raw["space"], f"layout {name!r}: space")),
        fields={
            k: _build(FieldSpec, f"layout {name!r}, field {k!r}", v)
            for k, v in raw["fields"].items()
        },
        parameters={
            k: _build(ParameterSpec, f"layout {name!r}, parameter {k!r}", v)
            for k, v in (raw.get("parameters") or {}).items()
        },
        grid={
            k: _build(AxisSpec, f"layout {name!r}, grid axis {k!r}", v)
            for k, v in (raw.get("grid") or {}).items()
        },
    )


def _build_mask(name: str, raw: Any) -> MaskSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise LayoutError(
            f"layout {name!r}: mask={raw!r} is not a mapping; write mask: "
            "{path: <dataset>, axes: [...]} or mask: {nan_in: <field>}"
        )
    spec = _build(MaskSpec, f"layout {name!r}, mask", raw)
    if spec.nan_in is not None and raw.get("masked_where") is not None:
        raise LayoutError(
            f"layout {name!r}, mask: 'masked_where' belongs to mask: {{path: ...}}; "
            f"remove it, since nan_in={spec.nan_in!r} masks the NaN and inf points"
        )
    if spec.masked_where is None:
        spec = dataclasses.replace(spec, masked_where="zero")
    return spec


def _as_names(value: Any, where: str) -> Sequence[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise LayoutError(f"{where}: expected a list of axis names, got {value!r}")
    return [str(v) for v in value]
