"""Joining of files into trajectories and times.

A *series* is a list of files holding consecutive times of the same trajectories. With
``join: trajectory`` every file is a series of its own. With ``join: time`` each pattern
of ``files`` is one series, ordered by the files' time coordinates. A series is stored
as segments ``(file_index, first_time, n_times)``: the global time indices
``first_time ... first_time + n_times - 1`` of the series live in that file.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from surrogates.data.files import DataFileError, expand_files
from surrogates.data.layout import TIME, TRAJECTORY, Layout
from surrogates.data.metadata import FileScan

Segment = tuple[int, int, int]


def group_files(layout: Layout) -> list[list[Path]]:
    """Expand ``layout.files`` into series of files, in reading order."""
    if layout.join == TIME:
        return [expand_files([pattern], layout.name) for pattern in layout.files]
    return [[path] for path in expand_files(layout.files, layout.name)]


def order_by_time(scans: Sequence[FileScan]) -> list[FileScan]:
    """Sort the files of one series by time; times must strictly increase.

    Raises
    ------
    DataFileError
        If a file's times are not finite and increasing, or two files repeat or
        overlap times; the message names both files.
    """
    for scan in scans:
        times = scan.times
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise DataFileError(
                f"{scan.path}: times {times.tolist()} are not finite and strictly "
                "increasing; fix the time coordinates written by the solver"
            )
    ordered = sorted(scans, key=lambda scan: scan.times[0])
    for before, after in itertools.pairwise(ordered):
        if after.times[0] <= before.times[-1]:
            raise DataFileError(
                f"{after.path} starts at time {after.times[0]:g}, which is not after "
                f"time {before.times[-1]:g} in {before.path}; files joined along "
                "time must not repeat or overlap times. Remove the duplicate file or "
                "fix its time."
            )
    return ordered


def check_series(series: Sequence[FileScan], first: FileScan, n_times: int) -> None:
    """Check that the files of one series match each other and the first file.

    Within a series every file contains the same trajectories. Across series, the
    space sizes and the total number of times, ``n_times``, agree.
    """
    head = series[0]
    total = n_series_times(series)
    if total != n_times:
        where = str(head.path)
        if len(series) > 1:
            where += f" and the {len(series) - 1} files joined to it along time"
        raise DataFileError(
            f"{where}: axis 'time' has {total} entries but the first trajectory has "
            f"{n_times}; all trajectories of a dataset must have the same number "
            "of times"
        )
    for scan in series:
        for axis, size in scan.sizes.items():
            expected = head.sizes[axis] if axis == TRAJECTORY else first.sizes[axis]
            if axis != TIME and size != expected:
                raise DataFileError(
                    f"{scan.path}: axis {axis!r} has {size} entries but {expected} "
                    "are expected from the other files; files of one dataset must "
                    "share space sizes, and files joined along time must also share "
                    "the trajectory count"
                )
        for name, values in scan.parameters.items():
            if not np.array_equal(values, head.parameters[name]):
                raise DataFileError(
                    f"{scan.path}: parameter {name!r} = {values.tolist()} differs "
                    f"from {head.parameters[name].tolist()} in {head.path}; files "
                    "joined along time must hold the same trajectories, so let each "
                    "pattern of 'files' match one run"
                )


def n_series_times(series: Sequence[FileScan]) -> int:
    """Return the number of times of a series: the sum over its files."""
    return sum(scan.sizes[TIME] for scan in series)


def segments_of(series: Sequence[FileScan], first_file_index: int) -> list[Segment]:
    """Return the segments of a series whose first file has ``first_file_index``."""
    segments, start = [], 0
    for offset, scan in enumerate(series):
        segments.append((first_file_index + offset, start, scan.sizes[TIME]))
        start += scan.sizes[TIME]
    return segments


def time_pieces(segments: Sequence[Segment], times: range) -> list[tuple[int, slice]]:
    """Split global time indices into ``(file_index, local slice)`` pieces, in order.

    ``times`` must have a positive step, as ``range(n_times)[a_slice]`` has for any
    slice without a negative step.
    """
    pieces = []
    for file_index, start, count in segments:
        first = times.start
        if first < start:
            first += -(-(start - first) // times.step) * times.step
        last = min(times.stop, start + count)
        if first < last:
            pieces.append((file_index, slice(first - start, last - start, times.step)))
    return pieces
