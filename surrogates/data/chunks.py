"""Chunk geometry of field datasets: chunk-cache sizes and chunking warnings.

HDF5 reads and decompresses a whole chunk whenever any part of it is requested and
the chunk is not in the dataset's chunk cache. h5py's default cache is 1 MiB per
open dataset, smaller than one compressed chunk of many real layouts, so a shuffled
reader that takes one sample at a time decompresses the same chunk once per sample.
This module sizes each dataset's cache from its chunk shape and from the time window
one sample reads, caps the caches by a per-process budget, and logs (once per
dataset) chunk shapes that make such reads slow.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict

import h5py

from surrogates.data.layout import COMPONENT, TIME, TRAJECTORY, FieldSpec

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 64 * 2**20
"""Chunk-cache budget of one process when the layout sets no ``cache_bytes``."""

H5PY_CACHE_BYTES = 2**20
"""h5py's default chunk cache per dataset; a planned cache is never made smaller."""

MAX_CHUNKS_PER_SAMPLE = 64
"""More chunks than this in one sample's read of one field logs a warning."""

MAX_BATCHES_PER_CHUNK = 8
"""A chunk that contains more samples than this many batches logs a warning."""

MAX_CACHE_SLOTS = 1_048_573
"""Largest hash table of a chunk cache: a prime, 8 MiB of slot pointers."""

_warned: set[tuple[str, str]] = set()


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    """The part of a field that one sample reads, along time.

    ``time_span`` counts the consecutive time indices from the first to the last
    one read, ``n_read_times`` the indices actually read (fewer with a stride), and
    ``n_groups`` the chunk groups whose chunks should stay cached at once (as
    :class:`~surrogates.data.sampler.ChunkSampler` interleaves them).
    """

    time_span: int = 1
    n_read_times: int = 1
    n_groups: int = 4


@dataclasses.dataclass(frozen=True)
class ChunkGeometry:
    """Chunking of one field's dataset, measured against one sample's read.

    ``chunks`` is None for a contiguous dataset. ``chunks_per_sample`` counts the
    chunks one sample's read touches at most, and ``samples_per_chunk`` the samples
    (trajectory and start time pairs) whose reads start in one chunk. ``filtered``
    is whether chunks pass through HDF5 filters (compression, shuffle, checksums)
    and so cost a decoding step each time they are read from the file.
    """

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...] | None
    chunk_bytes: int
    chunks_per_sample: int
    samples_per_chunk: int
    filtered: bool
    suggested_chunks: tuple[int, ...]


def chunk_geometry(
    dataset: h5py.Dataset, spec: FieldSpec, plan: ReadPlan
) -> ChunkGeometry:
    """Measure the chunking of ``dataset`` (the dataset of ``spec``) for ``plan``."""
    chunks = dataset.chunks
    suggested = tuple(
        size if axis not in (TRAJECTORY, TIME, *spec.select) else 1
        for axis, size in zip(spec.axes, dataset.shape, strict=True)
    )
    if chunks is None:
        return ChunkGeometry(spec.path, dataset.shape, None, 0, 0, 1, False, suggested)
    per_sample, per_chunk = 1, 1
    for axis, size, extent in zip(spec.axes, dataset.shape, chunks, strict=True):
        n_along = -(-size // extent)
        if axis == TIME:
            straddle = -(-(plan.time_span - 1) // extent) + 1
            per_sample *= min(plan.n_read_times, straddle, n_along)
            per_chunk *= extent
        elif axis == TRAJECTORY:
            per_chunk *= extent
        elif axis == COMPONENT or axis not in spec.select:
            per_sample *= n_along
    return ChunkGeometry(
        path=spec.path,
        shape=dataset.shape,
        chunks=chunks,
        chunk_bytes=math.prod(chunks) * dataset.dtype.itemsize,
        chunks_per_sample=per_sample,
        samples_per_chunk=per_chunk,
        filtered=dataset.id.get_create_plist().get_nfilters() > 0,
        suggested_chunks=suggested,
    )


def cache_settings(
    geometry: ChunkGeometry, plan: ReadPlan, max_bytes: int
) -> tuple[int, int]:
    """Return ``(n_slots, n_bytes)`` of a chunk cache for one dataset.

    The cache has room for the chunks of ``plan.n_groups`` samples, so that a
    chunk-aware order decompresses each chunk once. It is never smaller than
    h5py's 1 MiB default and never larger than ``max_bytes``. The slot count is a
    prime about 100 times the number of chunks that fit (at most
    ``MAX_CACHE_SLOTS``), because chunks whose slots collide evict each other.
    """
    needed = geometry.chunks_per_sample * geometry.chunk_bytes * plan.n_groups
    n_bytes = min(max(needed, H5PY_CACHE_BYTES), max_bytes)
    n_fit = max(1, n_bytes // max(geometry.chunk_bytes, 1))
    n_slots = min(next_prime(max(521, 100 * n_fit)), MAX_CACHE_SLOTS)
    return n_slots, n_bytes


def open_dataset(
    handle: h5py.File, path: str, n_slots: int, n_bytes: int
) -> h5py.Dataset:
    """Open the dataset at ``path`` with its own chunk cache of ``n_bytes`` bytes."""
    access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    # w0 = 0 makes eviction strictly least recently used: a chunk that one sample
    # read in full is still needed by the next samples of its group.
    access.set_chunk_cache(n_slots, n_bytes, 0.0)
    dataset_id = h5py.h5d.open(handle.id, path.encode(), access)
    # readonly lets h5py keep its selection reader between reads, as it does for
    # datasets of files opened with mode "r".
    return h5py.Dataset(dataset_id, readonly=handle.mode == "r")


class OpenDatasets:
    """Open datasets of one process, each with a chunk cache sized for a plan.

    The caches together stay within ``max_bytes``: opening a dataset first closes
    the least recently used ones, which frees their caches, until the new cache
    fits. One cache gets at most ``max_bytes // n_paths``, so the datasets of all
    ``n_paths`` field datasets of one file can be open at once.
    """

    def __init__(self, max_bytes: int, n_paths: int) -> None:
        self.max_bytes = max_bytes
        self.n_paths = n_paths
        self._open: OrderedDict[tuple[int, str], tuple[h5py.Dataset, int]]
        self._open = OrderedDict()

    def get(
        self, handle: h5py.File, file_index: int, spec: FieldSpec, plan: ReadPlan
    ) -> h5py.Dataset:
        """Return the dataset of ``spec`` in ``handle``, opening it if needed."""
        key = (file_index, spec.path)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key][0]
        geometry = chunk_geometry(handle[spec.path], spec, plan)
        max_bytes = self.max_bytes // self.n_paths
        n_slots, n_bytes = cache_settings(geometry, plan, max_bytes)
        used = sum(n for _, n in self._open.values())
        while self._open and used + n_bytes > self.max_bytes:
            used -= self._open.popitem(last=False)[1][1]
        dataset = open_dataset(handle, spec.path, n_slots, n_bytes)
        self._open[key] = (dataset, n_bytes)
        return dataset

    def __getitem__(self, key: tuple[int, str]) -> h5py.Dataset:
        return self._open[key][0]

    def close_file(self, file_index: int) -> None:
        """Close the datasets of one file, before the file itself is closed."""
        for key in [k for k in self._open if k[0] == file_index]:
            del self._open[key]

    def clear(self) -> None:
        """Close every dataset."""
        self._open = OrderedDict()


def next_prime(n: int) -> int:
    """Return the smallest prime at least ``n``."""
    candidate = max(n, 2)
    while any(candidate % d == 0 for d in range(2, math.isqrt(candidate) + 1)):
        candidate += 1
    return candidate


def rechunk_command(geometry: ChunkGeometry, filename: str) -> str:
    """Return an ``h5repack`` command that rechunks to one snapshot per chunk."""
    dims = "x".join(str(n) for n in geometry.suggested_chunks)
    return f"h5repack -l {geometry.path}:CHUNK={dims} {filename} rechunked.h5"


def warn_chunking(
    geometry: ChunkGeometry,
    filename: str,
    *,
    max_bytes: int,
    batch_size: int | None = None,
) -> None:
    """Log, once per dataset and problem, chunk shapes that make reading slow."""
    if geometry.chunks is None:
        return
    where = f"{filename}: dataset {geometry.path!r} with chunks {geometry.chunks}"
    fix = rechunk_command(geometry, filename)
    if geometry.chunks_per_sample > MAX_CHUNKS_PER_SAMPLE:
        _warn_once(
            geometry.path,
            "many",
            "%s: one sample reads %d chunks, so per-chunk overhead dominates; "
            "rechunk with larger chunks, e.g. `%s`",
            where,
            geometry.chunks_per_sample,
            fix,
        )
    sample_bytes = geometry.chunks_per_sample * geometry.chunk_bytes
    if geometry.filtered and sample_bytes > max_bytes:
        _warn_once(
            geometry.path,
            "cache",
            "%s: the chunk cache of %d bytes cannot hold the %d bytes of chunks one "
            "sample reads, so every read decompresses them again; raise cache_bytes "
            "in the layout or rechunk, e.g. `%s`",
            where,
            max_bytes,
            sample_bytes,
            fix,
        )
    if batch_size and geometry.samples_per_chunk > MAX_BATCHES_PER_CHUNK * batch_size:
        _warn_once(
            geometry.path,
            "large",
            "%s: one chunk holds %d samples, more than %d batches of %d; a plain "
            "shuffled order reads such a chunk once per sample. Use "
            "surrogates.data.ChunkSampler or rechunk, e.g. `%s`",
            where,
            geometry.samples_per_chunk,
            MAX_BATCHES_PER_CHUNK,
            batch_size,
            fix,
        )


def _warn_once(path: str, kind: str, message: str, *args: object) -> None:
    if (path, kind) not in _warned:
        _warned.add((path, kind))
        log.warning(message, *args)
