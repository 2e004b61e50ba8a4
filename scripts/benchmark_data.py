"""Benchmark the training loader against raw h5py bulk reads of the same bytes.

Writes files of shape ``(n_samples, 2, grid, grid)`` float32 read as the canonical
layout ``(trajectory, time, y, x)``: ``n_samples`` trajectories of two snapshots
each, so one step sample (input at time 0, target at time 1) reads one contiguous
``(2, grid, grid)`` block and an epoch reads every byte of the file once. Layouts:

- ``contiguous``: no chunks;
- ``chunked``: one snapshot per chunk, ``(1, 1, grid, grid)``, uncompressed;
- ``gzip``: one snapshot per chunk, gzip;
- ``gzip-packed``: ``--packed`` samples per chunk, ``(packed, 2, grid, grid)``, gzip.

For each, it times a bulk read (``read_direct`` of chunk-aligned blocks), h5py
reads of one sample at a time in shuffled order (``--naive-samples`` of them, with
h5py's default chunk cache), and the loader (``StepDataset`` and ``make_loader``
with 0, 2 and 4 workers, which reads each batch with one ``read_batch`` call and
unfiltered datasets by byte offset), best of ``--repeats``, with the files in the
page cache.
The loader takes a plain shuffled order (``EpochSampler``), except on
``gzip-packed``, where it takes the chunk-aware ``ChunkSampler``. A plain shuffle
of ``gzip-packed`` is timed on its first ``--naive-samples`` samples. The chunked
file is also timed after evicting it from the page cache before each run, so that
it is read from the disk. Last, for each ``--ram-budget-mb``, a fresh process
streams a chunked file at least 4 times the budget and reports its peak RSS.

Example: ``python scripts/benchmark_data.py --markdown /tmp/data_loading.md``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from surrogates.data import (
    ChunkSampler,
    EpochSampler,
    HDF5Source,
    Normalizer,
    StepDataset,
    StepTask,
    layout_from_dict,
    make_loader,
)

MIB = 2**20
TASK = StepTask(input_fields=("u",), output_fields=("u",))


def write_file(path: Path, n_samples: int, grid: int, chunks, compression) -> None:
    """Write smooth travelling waves with small noise, block by block."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2 * np.pi, grid, endpoint=False, dtype=np.float32)
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset(
            "u",
            shape=(n_samples, 2, grid, grid),
            dtype="f4",
            chunks=chunks,
            compression=compression,
        )
        for first in range(0, n_samples, 256):
            n = min(256, n_samples - first)
            phase = rng.uniform(0, 2 * np.pi, (n, 2, 1, 1)).astype(np.float32)
            block = np.sin(x[None, None, :, None] + phase) * np.cos(
                2 * x[None, None, None, :] - phase
            )
            block += rng.normal(0, 1e-3, block.shape).astype(np.float32)
            dataset[first : first + n] = block


def layout_of(path: Path, cache_bytes: int | None = None) -> dict:
    layout = {
        "name": path.stem,
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
    }
    if cache_bytes is not None:
        layout["cache_bytes"] = cache_bytes
    return layout


def bulk_rate(path: Path) -> dict:
    """Return MB/s of reading the whole dataset in chunk-aligned blocks."""
    with h5py.File(path, "r") as handle:
        dataset = handle["u"]
        step = max(64, dataset.chunks[0] if dataset.chunks else 1)
        buffer = np.empty((step, *dataset.shape[1:]), dtype=dataset.dtype)
        start = time.perf_counter()
        for first in range(0, dataset.shape[0], step):
            n = min(step, dataset.shape[0] - first)
            dataset.read_direct(buffer, np.s_[first : first + n], np.s_[:n])
        elapsed = time.perf_counter() - start
        n_mb = dataset.size * dataset.dtype.itemsize / 1e6
    return {"mb_per_s": n_mb / elapsed}


def per_sample_rate(path: Path, n_samples: int) -> dict:
    """Return MB/s of reading ``n_samples`` samples one at a time, shuffled."""
    with h5py.File(path, "r") as handle:
        dataset = handle["u"]
        order = np.random.default_rng(0).permutation(dataset.shape[0])[:n_samples]
        start = time.perf_counter()
        for i in order:
            dataset[i]
        elapsed = time.perf_counter() - start
        n_mb = len(order) * dataset[0].nbytes / 1e6
    return {"mb_per_s": n_mb / elapsed}


def make_dataset(path: Path, cache_bytes: int | None = None) -> StepDataset:
    source = HDF5Source(layout_from_dict(layout_of(path, cache_bytes)))
    identity = Normalizer({"u": [0.0]}, {"u": [1.0]}, {}, {}, {}, {})
    return StepDataset(source, range(source.n_trajectories), TASK, identity)


def loader_rate(
    dataset: StepDataset,
    sampler_kind: str,
    workers: int,
    batch_size: int,
    max_samples: int | None = None,
) -> dict:
    """Stream one epoch (or ``max_samples``) and return samples/s and MB/s."""
    if sampler_kind == "chunk":
        sampler = ChunkSampler.for_dataset(
            dataset, seed=0, batch_size=batch_size, num_workers=workers
        )
    else:
        sampler = EpochSampler(len(dataset), seed=0)
    loader = make_loader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers
    )
    n_samples, first_batch = 0, None
    start = time.perf_counter()
    for batch in loader:
        n_samples += len(batch["inputs"])
        first_batch = first_batch or time.perf_counter() - start
        if max_samples and n_samples >= max_samples:
            break
    elapsed = time.perf_counter() - start
    dataset.source.close()
    sample_mb = 2 * np.prod(dataset.source.space_shape) * 4 / 1e6
    return {
        "samples_per_s": n_samples / elapsed,
        "mb_per_s": n_samples * sample_mb / elapsed,
        "first_batch_s": first_batch,
    }


class InMemorySamples(Dataset):
    """Samples shaped as the loader's, copied from memory: the DataLoader's ceiling."""

    def __init__(self, n_samples: int, grid: int) -> None:
        self.n_samples = n_samples
        self.state = torch.zeros(2, grid, grid)

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "inputs": self.state[:1].clone(),
            "conditions": torch.zeros(0),
            "targets": self.state[1:].clone(),
            "trajectory": torch.tensor(i),
            "time": torch.tensor(0),
        }


def in_memory_rate(args, workers: int) -> dict:
    """Time one epoch of :class:`InMemorySamples` (no HDF5, no normalization)."""
    dataset = InMemorySamples(args.n_samples, args.grid)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=workers)
    start = time.perf_counter()
    n_samples = sum(len(batch["inputs"]) for batch in loader)
    elapsed = time.perf_counter() - start
    sample_mb = 2 * args.grid**2 * 4 / 1e6
    return {
        "samples_per_s": n_samples / elapsed,
        "mb_per_s": n_samples * sample_mb / elapsed,
    }


def best_of(repeats: int, measure) -> dict:
    results = [measure() for _ in range(repeats)]
    return max(results, key=lambda r: r["mb_per_s"])


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache, so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold_bulk(path: Path) -> dict:
    evict(path)
    return bulk_rate(path)


def cold_loader(dataset: StepDataset, workers: int, batch_size: int) -> dict:
    evict(dataset.source.files[0])
    return loader_rate(dataset, "plain", workers, batch_size)


def rss_mb(key: str = "VmRSS") -> float:
    """Return this process's resident set size (``VmRSS``) or its peak (``VmHWM``).

    Values are in MB, read from /proc/self/status (Linux). Unlike ``ru_maxrss``,
    ``VmHWM`` starts afresh at exec, so it excludes the RSS of the parent that
    started this process.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def rss_child(path: Path, cache_bytes: int, workers: int, batch_size: int) -> None:
    """Stream one epoch of ``path`` and print peak RSS figures as JSON."""
    dataset = make_dataset(path, cache_bytes)
    baseline = rss_mb()
    result = loader_rate(dataset, "chunk", workers, batch_size)
    peak = rss_mb("VmHWM")
    # ru_maxrss is in KiB. For the children (forked workers) it is the largest
    # worker's peak, counting the pages it shares with this process.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6
    print(
        json.dumps({**result, "baseline": baseline, "peak": peak, "worker": children})
    )


def measure_rss(path: Path, cache_bytes: int, workers: int, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--rss-child", str(path)]
    command += ["--cache-bytes", str(cache_bytes), "--batch-size", str(batch_size)]
    command += ["--rss-workers", str(workers)]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def file_specs(grid: int, packed: int) -> dict[str, tuple]:
    snapshot = (1, 1, grid, grid)
    return {
        "contiguous": (None, None),
        "chunked": (snapshot, None),
        "gzip": (snapshot, "gzip"),
        "gzip-packed": ((packed, 2, grid, grid), "gzip"),
    }


def run_matrix(args, paths: dict[str, Path]) -> tuple[dict, dict]:
    """Time bulk reads and the loader for every file and worker count."""
    bulk, single, loader = {}, {}, {}
    for workers in args.workers:
        loader["memory", workers] = best_of(
            args.repeats, lambda w=workers: in_memory_rate(args, w)
        )
        print(f"in-memory workers={workers}: {loader['memory', workers]}")
    for name, path in paths.items():
        bulk[name] = best_of(args.repeats, lambda p=path: bulk_rate(p))["mb_per_s"]
        single[name] = best_of(
            args.repeats, lambda p=path: per_sample_rate(p, args.naive_samples)
        )["mb_per_s"]
        dataset = make_dataset(path)
        sampler = "chunk" if name == "gzip-packed" else "plain"
        for workers in args.workers:
            result = best_of(
                args.repeats,
                lambda d=dataset, w=workers, s=sampler: loader_rate(
                    d, s, w, args.batch_size
                ),
            )
            loader[name, workers] = result
            print(f"{name} workers={workers}: {result} (bulk {bulk[name]:.0f} MB/s)")
        if name == "chunked":
            cold = "chunked, cold"
            bulk[cold] = best_of(args.repeats, lambda p=path: cold_bulk(p))["mb_per_s"]
            for workers in args.workers:
                loader[cold, workers] = best_of(
                    args.repeats,
                    lambda d=dataset, w=workers: cold_loader(d, w, args.batch_size),
                )
                print(f"{cold} workers={workers}: {loader[cold, workers]}")
        if name == "gzip-packed":
            naive = loader_rate(
                dataset, "plain", 0, args.batch_size, max_samples=args.naive_samples
            )
            loader[name, "naive"] = naive
            print(f"{name} plain shuffle: {naive}")
    return bulk, single, loader


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    import torch

    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({model}), {total_kib / 2**20:.0f} GiB "
        f"RAM, {disk_kind(Path('/tmp'))}; Python {sys.version.split()[0]}, h5py "
        f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version}), numpy "
        f"{np.__version__}, torch {torch.__version__}"
    )


def disk_kind(path: Path) -> str:
    """Describe the block device under ``path`` from /sys, if it can be found."""
    device = os.stat(path).st_dev
    name = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve()
    rotational = name / "queue" / "rotational"
    if not rotational.exists():
        rotational = name.parent / "queue" / "rotational"
    if not rotational.exists():
        return f"disk {name.name} (type unknown)"
    kind = "rotational" if rotational.read_text().strip() == "1" else "non-rotational"
    return f"disk {name.name} ({kind})"


def cell(result: dict, bulk: float) -> str:
    return (
        f"{result['mb_per_s']:.0f} MB/s, {result['samples_per_s']:.0f}/s "
        f"({100 * result['mb_per_s'] / bulk:.0f}%)"
    )


def markdown(args, bulk, single, loader, sizes, rss, loads, command) -> str:
    """Return the results as markdown: command, machine, table and notes."""
    header = " | ".join(f"loader, {w} workers" for w in args.workers)
    orders = {"gzip-packed": "ChunkSampler"}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. Date: {date}. Load average (1 min) before and "
        f"after: {loads[0]:.2f}, {loads[1]:.2f}.",
        "",
        f"| file | MB on disk | bulk h5py read | h5py per sample | order | {header} |",
        "|---" * (5 + len(args.workers)) + "|",
    ]
    for name in bulk:
        cells = " | ".join(cell(loader[name, w], bulk[name]) for w in args.workers)
        size = sizes[name.split(",")[0]]
        order = orders.get(name, "EpochSampler")
        per_sample = f"{single[name]:.0f} MB/s" if name in single else "-"
        lines.append(
            f"| {name} | {size:.0f} | {bulk[name]:.0f} MB/s | {per_sample} | {order} "
            f"| {cells} |"
        )
    memory = ", ".join(
        f"{loader['memory', w]['mb_per_s']:.0f} MB/s with {w} workers"
        for w in args.workers
    )
    naive = loader["gzip-packed", "naive"]
    lines += [
        "",
        f"DataLoader ceiling (samples of the same size copied from memory, no HDF5 "
        f"and no normalization): {memory}.",
        "",
        f"gzip-packed with a plain shuffled order (EpochSampler, 0 workers, first "
        f"{args.naive_samples} samples): {cell(naive, bulk['gzip-packed'])}.",
        "",
        "Peak RSS of a fresh process streaming one epoch of a chunked file at least "
        "4 times the RAM budget (cache_bytes a quarter of the budget):",
        "",
        "| budget | file | workers | peak RSS | before the first read | added by "
        "streaming | largest worker |",
        "|---|---|---|---|---|---|---|",
    ]
    for (budget, workers), result in rss.items():
        worker = f"{result['worker']:.0f} MB" if workers else "-"
        lines.append(
            f"| {budget} MB | {sizes[f'big{budget}']:.0f} MB | {workers} | "
            f"{result['peak']:.0f} MB | {result['baseline']:.0f} MB | "
            f"{result['peak'] - result['baseline']:.0f} MB | {worker} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coolmathgans_bench"))
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    parser.add_argument("--n-samples", type=int, default=2000, help="samples per file")
    parser.add_argument("--grid", type=int, default=128, help="grid points per axis")
    parser.add_argument("--packed", type=int, default=32, help="samples per chunk")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    parser.add_argument(
        "--naive-samples",
        type=int,
        default=256,
        help="samples read one at a time by h5py, and by the loader with a plain "
        "shuffle from the gzip-packed file",
    )
    parser.add_argument(
        "--ram-budget-mb",
        type=int,
        nargs="+",
        default=[256, 512],
        help="RAM budgets in MB; each RSS file is at least 4 times larger and the "
        "chunk caches get a quarter of the budget",
    )
    parser.add_argument("--markdown", type=Path, help="write the results section here")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rss-workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache-bytes", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.cache_bytes, args.rss_workers, args.batch_size)
        return
    command = " ".join(["python", "scripts/benchmark_data.py", *sys.argv[1:]])
    loads = [os.getloadavg()[0]]
    args.workdir.mkdir(parents=True, exist_ok=True)
    paths, sizes = {}, {}
    try:
        for name, (chunks, compression) in file_specs(args.grid, args.packed).items():
            paths[name] = args.workdir / f"{name}.h5"
            write_file(paths[name], args.n_samples, args.grid, chunks, compression)
            sizes[name] = paths[name].stat().st_size / 1e6
        bulk, single, loader = run_matrix(args, paths)
        rss = {}
        for budget in args.ram_budget_mb:
            big = args.workdir / f"big{budget}.h5"
            n_big = int(np.ceil(4.2 * budget * 1e6 / (2 * args.grid**2 * 4)))
            write_file(big, n_big, args.grid, (1, 1, args.grid, args.grid), None)
            sizes[f"big{budget}"] = big.stat().st_size / 1e6
            for workers in (0, 2):
                rss[budget, workers] = measure_rss(
                    big, budget * MIB // 4, workers, args.batch_size
                )
                print(f"RSS, {budget} MB, {workers} workers: {rss[budget, workers]}")
            big.unlink()
        loads.append(os.getloadavg()[0])
        text = markdown(args, bulk, single, loader, sizes, rss, loads, command)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
