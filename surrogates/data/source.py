"""Lazy, fork- and spawn-safe reading of fields from HDF5 files described by a layout.

:class:`HDF5Source` reads only metadata, parameters and grids when it is built. Field
values are read per request, through file handles that each process opens for itself,
so a source pickles as paths and metadata and can be handed to DataLoader workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from surrogates.data.chunks import (
    DEFAULT_CACHE_BYTES,
    ChunkGeometry,
    OpenDatasets,
    ReadPlan,
    chunk_geometry,
    warn_chunking,
)
from surrogates.data.direct import DirectReader, direct_reader, open_fd
from surrogates.data.files import (
    DataFileError,
    NonFiniteValueError,
    damaged_file_error,
    expand_files,
    open_hdf5,
)
from surrogates.data.layout import COMPONENT, TIME, TRAJECTORY, FieldSpec, Layout
from surrogates.data.metadata import (
    FieldInfo,
    FileScan,
    field_infos,
    parameter_units,
    read_grid,
    read_mask_dataset,
    scan_file,
)
from surrogates.data.series import (
    check_series,
    group_files,
    n_series_times,
    order_by_time,
    segments_of,
    time_pieces,
)

__all__ = [
    "DataFileError",
    "FieldInfo",
    "HDF5Source",
    "NonFiniteValueError",
    "expand_files",
    "open_hdf5",
]

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 64
"""Open handles kept per process; the least recently used one is closed beyond it."""


class HDF5Source:
    """Fields, parameters and grids of one or more HDF5 files, read lazily.

    Parameters
    ----------
    layout
        Where each array lives and the role of each axis.

    Notes
    -----
    Trajectories are numbered across files in sorted file order (with ``join:
    time``, across the patterns of ``files`` in the order listed). Every field read
    is returned in model layout ``(n_times, n_components, *space)`` as native float32,
    whatever the file's dtype, byte order or axis order.

    Each open dataset keeps its own HDF5 chunk cache, sized by :meth:`plan_reads`
    to hold the chunks of a few samples. Together the caches of one process stay
    within ``layout.cache_bytes`` (64 MiB when unset): the least recently used
    datasets are closed, which frees their caches, before a new one would exceed
    it. No field values are cached beyond these chunk caches.

    ``mask`` is ``None`` without a layout mask, else a bool array of shape
    ``space_shape`` in model axis order, True at valid points. It is read once,
    from the first file, when the source is built.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._handles: dict[int, h5py.File] = {}
        self._fds: dict[int, int] = {}
        # Direct readers keep their chunk offsets and read plans across close(),
        # as long as the file's modification time and size stay the same.
        self._direct: dict[tuple[int, str], DirectReader | None] = {}
        self._signatures: dict[int, tuple[int, int]] = {}
        self._templates: dict[str, tuple] = {}
        self._in_place: dict[str, bool] = {}
        self.read_plan = ReadPlan()
        self.cache_bytes = layout.cache_bytes or DEFAULT_CACHE_BYTES
        n_paths = len({spec.path for spec in layout.fields.values()})
        self._datasets = OpenDatasets(self.cache_bytes, n_paths)
        self._pid = os.getpid()
        joined_in_time = layout.join == TIME
        groups = []
        for paths in group_files(layout):
            scans = [scan_file(p, layout, read_times=joined_in_time) for p in paths]
            groups.append(order_by_time(scans) if joined_in_time else scans)
        self._build_index(groups)
        first = groups[0][0]
        with open_hdf5(first.path, locking=layout.locking) as handle:
            self.fields = field_infos(handle, layout)
            self.parameter_units = parameter_units(handle, layout)
            self.grid = read_grid(handle, layout, first.sizes, (TIME, *layout.space))
        if joined_in_time:
            self.grid[TIME]["values"] = self._joined_times(groups)
        self.sizes = {**first.sizes, TIME: self.n_times}
        self.space_shape = tuple(first.sizes[axis] for axis in layout.space)
        self.mask: np.ndarray | None = None
        self.mask = self._read_mask()
        log.info(
            "layout %r: %d files, %d trajectories, %d times, space %s, fields %s",
            layout.name,
            len(self.files),
            self.n_trajectories,
            self.n_times,
            dict(zip(layout.space, self.space_shape, strict=True)),
            list(self.fields),
        )
        if self.mask is not None:
            log.info(
                "layout %r: mask from %s, %d of %d points valid",
                layout.name,
                self.mask_source,
                int(self.mask.sum()),
                self.mask.size,
            )

    def _read_mask(self) -> np.ndarray | None:
        # The static mask, (*space) bool in model order, True at valid points.
        spec = self.layout.mask
        if spec is None:
            return None
        if spec.nan_in is None:
            with open_hdf5(self.files[0], locking=self.layout.locking) as handle:
                mask = read_mask_dataset(
                    handle, spec, self.layout.space, self.space_shape
                )
            path = f"{self.files[0]}: mask dataset {spec.path!r}"
            fix = "check 'masked_where' (zero or nonzero) and 'path'"
        else:
            first = self.read(spec.nan_in, 0, slice(0, 1), check_finite=False)
            self.close()  # no handle stays open in the process that forks workers
            mask = np.isfinite(first).all(axis=(0, 1))
            path = (
                f"{self.files[0]}: field {spec.nan_in!r} "
                f"({self.layout.fields[spec.nan_in].path})"
            )
            fix = "name a field that is finite inside the domain in 'mask.nan_in'"
        if not mask.any():
            raise DataFileError(
                f"{path}: the mask marks all {mask.size} points as masked, so no "
                f"point is left to train on; {fix}"
            )
        return mask

    @property
    def mask_source(self) -> str | None:
        """Where the mask comes from, in words, or None without a mask."""
        spec = self.layout.mask
        if spec is None:
            return None
        if spec.nan_in is not None:
            return f"NaN or inf of field {spec.nan_in!r} at the first snapshot"
        return f"dataset {spec.path!r}, masked where {spec.masked_where}"

    def _build_index(self, groups: list[list[FileScan]]) -> None:
        # Number files, trajectories and per-file time segments over all series.
        first = groups[0][0]
        self.n_times = n_series_times(groups[0])
        self.files: list[Path] = []
        self._series: list[list[tuple[int, int, int]]] = []
        self._trajectories: list[tuple[int, int]] = []
        parameters: dict[str, list[np.ndarray]] = {
            n: [] for n in self.layout.parameters
        }
        for series in groups:
            check_series(series, first, self.n_times)
            index = len(self._series)
            self._series.append(segments_of(series, len(self.files)))
            self.files.extend(scan.path for scan in series)
            n_local = series[0].n_trajectories
            self._trajectories.extend((index, i) for i in range(n_local))
            for name in parameters:
                parameters[name].append(series[0].parameters[name])
        self.parameters = {
            name: np.concatenate(values) for name, values in parameters.items()
        }

    @staticmethod
    def _joined_times(groups: list[list[FileScan]]) -> np.ndarray:
        values = np.concatenate([scan.times for scan in groups[0]])
        for series in groups[1:]:
            other = np.concatenate([scan.times for scan in series])
            if not np.allclose(other, values, rtol=1e-9, atol=0):
                log.warning(
                    "%s: times %s... differ from those of %s; the time grid is "
                    "taken from the first series",
                    series[0].path,
                    other[:3].tolist(),
                    groups[0][0].path,
                )
        return values

    @property
    def n_trajectories(self) -> int:
        """Total number of trajectories over all files."""
        return len(self._trajectories)

    def locate(self, trajectory: int, time: int) -> tuple[Path, int, int]:
        """Return the file, the trajectory index in it and the time index in it."""
        series, local = self._trajectories[trajectory]
        time = range(self.n_times)[time]
        for file_index, start, count in self._series[series]:
            if start <= time < start + count:
                return self.files[file_index], local, time - start
        raise IndexError(f"time index {time} not found in trajectory {trajectory}")

    # chunk caches

    def plan_reads(self, plan: ReadPlan) -> None:
        """Size the chunk caches for samples that each read ``plan``'s time window.

        Closes the open datasets, so the next reads use caches of the new size, and
        logs (once per dataset) chunk shapes that make such reads slow.
        """
        self.read_plan = plan
        self._datasets.clear()
        self.check_chunking()

    def check_chunking(self, batch_size: int | None = None) -> dict[str, ChunkGeometry]:
        """Measure each field's chunking in the first file and log slow shapes.

        Returns
        -------
        dict
            Field name to :class:`~surrogates.data.chunks.ChunkGeometry`.
        """
        geometries = {}
        max_bytes = self.cache_bytes // self._datasets.n_paths
        with open_hdf5(self.files[0], locking=self.layout.locking) as handle:
            for name, spec in self.layout.fields.items():
                geometry = chunk_geometry(handle[spec.path], spec, self.read_plan)
                warn_chunking(
                    geometry,
                    str(self.files[0]),
                    max_bytes=max_bytes,
                    batch_size=batch_size,
                )
                geometries[name] = geometry
        return geometries

    # handles

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            # A forked child inherits the parent's handles; never use them.
            # Direct readers stay: they take new descriptors on their next read.
            self._handles, self._fds = {}, {}
            self._datasets.clear()
            self._pid = os.getpid()

    def _handle(self, file_index: int) -> h5py.File:
        self._check_pid()
        handle = self._handles.pop(file_index, None)
        if handle is None:
            handle = open_hdf5(self.files[file_index], locking=self.layout.locking)
            if len(self._handles) >= MAX_OPEN_FILES:
                self._close_file(next(iter(self._handles)))
        self._handles[file_index] = handle  # most recently used last
        return handle

    def _close_file(self, file_index: int) -> None:
        self._datasets.close_file(file_index)
        self._handles.pop(file_index).close()
        fd = self._fds.pop(file_index, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close every file handle this process opened."""
        self._datasets.clear()
        if self._pid == os.getpid():
            for file_index in list(self._handles):
                self._close_file(file_index)
        self._handles, self._fds = {}, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"], state["_fds"] = {}, {}
        state["_direct"], state["_signatures"], state["_templates"] = {}, {}, {}
        state["_datasets"] = OpenDatasets(self.cache_bytes, self._datasets.n_paths)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    # reading

    def read(
        self, field: str, trajectory: int, times: slice, *, check_finite: bool = True
    ) -> np.ndarray:
        """Read one field of one trajectory at the given time indices.

        Parameters
        ----------
        field, trajectory
            Field name and global trajectory index.
        times
            Time indices as a slice with a positive step (or none).
        check_finite
            Raise on NaN or inf at valid points (every point without a mask); the
            preflight check turns it off to count them.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_times, n_components, *space)``, float32. Values at masked
            points are returned as stored, which may be NaN.

        Raises
        ------
        NonFiniteValueError
            If the values contain NaN or inf at a valid point; the message names
            file, dataset and the first offending index.
        """
        requested = self._requested(times)
        shape = (len(requested), self.fields[field].n_components, *self.space_shape)
        values = np.empty(shape, dtype=np.float32)
        self.fill_unchecked(values, field, trajectory, requested)
        if check_finite and not self._finite_at_valid_points(values):
            spec = self.layout.fields[field]
            self._raise_non_finite(values, field, spec, trajectory, requested)
        return values

    def _finite_at_valid_points(self, values: np.ndarray) -> bool:
        if self.mask is None:
            return bool(np.isfinite(values).all())
        return bool(np.isfinite(values[:, :, self.mask]).all())

    def read_into(
        self, field: str, trajectory: int, times: slice, out: np.ndarray
    ) -> None:
        """Read as :meth:`read` does, into ``out``, without the NaN/inf check.

        ``out`` is a float32 array of shape ``(n_times, n_components, *space)``,
        for example one sample's slot in a batch. A C-contiguous one is filled
        straight from the file when the dataset allows it.
        """
        requested = self._requested(times)
        shape = (len(requested), self.fields[field].n_components, *self.space_shape)
        if out.shape != shape or out.dtype != np.float32:
            raise ValueError(
                f"out has shape {out.shape} and dtype {out.dtype}; field {field!r} "
                f"at {len(requested)} times needs {shape} float32"
            )
        self.fill_unchecked(out, field, trajectory, requested)

    def _requested(self, times: slice) -> range:
        requested = range(self.n_times)[times]
        if requested.step < 1:
            raise ValueError(f"times={times} must have a positive step")
        return requested

    def fill_batch(
        self, out: np.ndarray, field: str, windows: Sequence[tuple[int, range]]
    ) -> None:
        """Fill ``out[b]`` with one field at ``windows[b] = (trajectory, times)``.

        ``out`` is float32 ``(B, len(times), n_components, *space)``, and every
        ``times`` range has the same length and step. Where the file allows, the
        samples of each file are read by one
        :meth:`~surrogates.data.direct.DirectReader.read_many` call; the others
        one by one with :meth:`fill_unchecked`.
        """
        spec = self.layout.fields[field]
        if self._pid != os.getpid():
            self._check_pid()
        by_file: dict[int, list[tuple[int, int, int]]] = {}
        rest = []
        for b, (trajectory, times) in enumerate(windows):
            series, local = self._trajectories[trajectory]
            segments = self._series[series]
            if len(segments) == 1 and segments[0][1] == 0:
                by_file.setdefault(segments[0][0], []).append((b, local, times.start))
            else:
                rest.append(b)
        for file_index, members in by_file.items():
            if not self._read_many(out, field, spec, file_index, members, windows):
                rest.extend(b for b, _, _ in members)
        for b in rest:
            self.fill_unchecked(out[b], field, *windows[b])

    def _read_many(self, out, field, spec, file_index, members, windows) -> bool:
        # One read_many call for the samples of one file; False if not possible.
        reader = self._direct_reader(file_index, spec)
        if reader is None or not self._fits_in_place(field, spec, reader):
            return False
        first, local, start = members[0]
        times = windows[first][1]
        template = self._index_template(field, spec)
        index = tuple(
            local
            if axis is TRAJECTORY
            else slice(start, start + (len(times) - 1) * times.step + 1, times.step)
            if axis is TIME
            else axis
            for axis in template
        )
        starts = {}
        if TRAJECTORY in template:
            starts[template.index(TRAJECTORY)] = np.array([m[1] for m in members])
        if TIME in template:
            starts[template.index(TIME)] = np.array([m[2] for m in members])
        rows = [b for b, _, _ in members]
        return reader.read_many(index, starts, out, rows)

    def fill_unchecked(
        self, out: np.ndarray, field: str, trajectory: int, requested: range
    ) -> None:
        """Fill ``out`` as :meth:`read_into` does, without checking its arguments.

        ``requested`` is a range of time indices with a positive step, and ``out``
        a float32 array of shape ``(len(requested), n_components, *space)``. This
        is the loader's path, called once per field and sample.
        """
        spec = self.layout.fields[field]
        series, local = self._trajectories[trajectory]
        if self._pid != os.getpid():
            self._check_pid()
        position = 0
        for file_index, local_times in time_pieces(self._series[series], requested):
            index = tuple(
                local if axis is TRAJECTORY else local_times if axis is TIME else axis
                for axis in self._index_template(field, spec)
            )
            reader = self._direct_reader(file_index, spec)
            n = len(range(local_times.start, local_times.stop, local_times.step))
            target = out[position : position + n]
            position += n
            if (
                reader is not None
                and target.flags.c_contiguous
                and self._fits_in_place(field, spec, reader)
                and reader.read(index, target) is not None
            ):
                continue
            values = None if reader is None else reader.read(index)
            if values is None:
                handle = self._handle(file_index)
                dataset = self._datasets.get(handle, file_index, spec, self.read_plan)
                try:
                    values = dataset[index]
                except OSError as error:
                    path = self.files[file_index]
                    raise damaged_file_error(str(path), spec.path, error) from error
            target[...] = self._to_model_layout(values, spec)

    def _index_template(self, field: str, spec: FieldSpec) -> tuple:
        # Per axis: TRAJECTORY or TIME (filled in per read), or the fixed index.
        template = self._templates.get(field)
        if template is None:
            # This module's TRAJECTORY and TIME objects, compared with `is`, so
            # templates are built in each process and never pickled.
            template = tuple(
                TRAJECTORY
                if axis == TRAJECTORY
                else TIME
                if axis == TIME
                else spec.select.get(axis, slice(None))
                for axis in spec.axes
            )
            self._templates[field] = template
        return template

    def _to_model_layout(self, values: np.ndarray, spec: FieldSpec) -> np.ndarray:
        # A view of values in the axis order (time, component, *space).
        kept = [a for a in spec.axes if a != TRAJECTORY and a not in spec.select]
        if TIME not in kept:
            values = values[np.newaxis]
            kept.insert(0, TIME)
        if COMPONENT not in kept:
            values = values[..., np.newaxis]
            kept.append(COMPONENT)
        return values.transpose(
            [kept.index(a) for a in (TIME, COMPONENT, *self.layout.space)]
        )

    def _direct_reader(self, file_index: int, spec: FieldSpec) -> DirectReader | None:
        # The direct reader of one dataset with an open descriptor, or None where
        # h5py must read it.
        reader = self._direct.get((file_index, spec.path), False)
        if reader is False or (reader and file_index not in self._fds):
            reader = self._open_direct(file_index, spec)
        return reader

    def _open_direct(self, file_index: int, spec: FieldSpec) -> DirectReader | None:
        # Open the file's descriptor if needed, then build the reader if it is new.
        if file_index not in self._fds:
            self._open_fd(file_index)
        reader = self._direct.get((file_index, spec.path), False)
        if reader is not False:
            return reader
        handle = self._handle(file_index)
        dataset = self._datasets.get(handle, file_index, spec, self.read_plan)
        reader = direct_reader(dataset, self._fds[file_index])
        self._direct[file_index, spec.path] = reader
        return reader

    def _fits_in_place(self, field: str, spec: FieldSpec, reader: DirectReader):
        # Whether the file's bytes can go straight into the output: native float32
        # in the output's axis order (axes of size 1 aside).
        fits = self._in_place.get(field)
        if fits is None:
            kept = [a for a in spec.axes if a != TRAJECTORY and a not in spec.select]
            model = [a for a in (TIME, COMPONENT, *self.layout.space) if a in kept]
            native = reader.dtype == np.dtype(np.float32)
            fits = self._in_place[field] = native and kept == model
        return fits

    def _open_fd(self, file_index: int) -> None:
        # Open a descriptor for direct reads and give it to the file's kept readers,
        # or drop them if the file changed since they were built.
        fd = self._fds[file_index] = open_fd(self.files[file_index])
        status = os.fstat(fd)
        signature = (status.st_mtime_ns, status.st_size)
        kept = [key for key in self._direct if key[0] == file_index]
        if self._signatures.get(file_index) != signature:
            self._signatures[file_index] = signature
            for key in kept:
                del self._direct[key]
            return
        for key in kept:
            if self._direct[key] is not None:
                self._direct[key].fd = fd

    def _raise_non_finite(
        self, values: np.ndarray, field: str, spec: FieldSpec, trajectory: int, times
    ) -> None:
        bad_points = ~np.isfinite(values)
        if self.mask is not None:
            bad_points &= self.mask
        bad = np.argwhere(bad_points)
        t, _, *space = bad[0]
        time_index = times[t]
        path, local, local_time = self.locate(trajectory, time_index)
        position = dict(zip(self.layout.space, (int(s) for s in space), strict=True))
        points = "" if self.mask is None else " at valid (unmasked) points"
        raise NonFiniteValueError(
            f"{path}: dataset {spec.path!r} (field {field!r}) contains {len(bad)} NaN "
            f"or inf values{points} in trajectory {local} at times {times.start}:"
            f"{times.stop}; the first is {values[tuple(bad[0])]} at time index "
            f"{time_index} (index {local_time} in that file), {position}. Fix or "
            "drop that trajectory in the solver output before training, or, for "
            "points outside the domain, mark them with the layout's 'mask'."
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
            "mask": None
            if self.mask is None
            else {
                "source": self.mask_source,
                "n_valid": int(self.mask.sum()),
                "n_masked": int(self.mask.size - self.mask.sum()),
                "n_points": int(self.mask.size),
            },
        }
