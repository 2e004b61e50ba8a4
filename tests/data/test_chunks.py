"""Chunk-aware reading: file locking, chunk caches, chunk warnings, chunk order."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from datafiles import canonical_layout, wave_field, write_canonical_file

import surrogates.data.chunks as chunks_module
import surrogates.data.source as source_module
from surrogates.data import (
    ChunkSampler,
    DataFileError,
    EpochSampler,
    HDF5Source,
    Normalizer,
    ReadPlan,
    StepDataset,
    StepTask,
    chunk_groups,
    layout_from_dict,
    make_loader,
)
from surrogates.data.chunks import cache_settings, chunk_geometry, next_prime
from surrogates.data.files import open_hdf5
from surrogates.data.sampler import deal_batches

TASK = StepTask(input_fields=("vorticity",), output_fields=("vorticity",))
IDENTITY = Normalizer({"vorticity": [0.0]}, {"vorticity": [1.0]}, {}, {}, {}, {})


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(chunks_module, "_warned", set())


def write_chunked(path, chunks, n_trajectories=2, n_times=129, n_grid=8):
    """Canonical file with gzip chunks of the given shape; returns the values."""
    write_canonical_file(path, n_trajectories, n_times, n_grid)
    values = wave_field(n_trajectories, n_times, n_grid)
    with h5py.File(path, "r+") as handle:
        del handle["fields/vorticity"]
        handle.create_dataset(
            "fields/vorticity", data=values, chunks=chunks, compression="gzip"
        )
    return values


# file locking


def test_locking_false_reaches_h5py(canonical_file):
    layout = layout_from_dict({**canonical_layout(canonical_file), "locking": False})
    source = HDF5Source(layout)
    source.read("vorticity", 0, slice(0, 2))
    handle = source._handles[0]
    assert handle.id.get_access_plist().get_file_locking()[0] == 0
    source.close()


def test_layout_keeps_reading_options(canonical_file):
    raw = {**canonical_layout(canonical_file), "locking": False, "cache_bytes": 4096}
    layout = layout_from_dict(raw)
    assert layout.locking is False
    assert layout.cache_bytes == 4096
    assert layout_from_dict(layout.to_dict()) == layout


def test_layout_rejects_bad_reading_options(canonical_file):
    with pytest.raises(ValueError, match="locking='no'"):
        layout_from_dict({**canonical_layout(canonical_file), "locking": "no"})
    with pytest.raises(ValueError, match="cache_bytes=0"):
        layout_from_dict({**canonical_layout(canonical_file), "cache_bytes": 0})


WRITER = """
import sys, h5py
with h5py.File(sys.argv[1], "r+") as handle:
    handle["parameters/viscosity"][0] = 0.5
    handle.flush()
    print("open", flush=True)
    sys.stdin.readline()
"""


def test_unlocked_read_while_writer_holds_lock(tmp_path, monkeypatch):
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)
    path = tmp_path / "waves.h5"
    values = write_canonical_file(path, n_trajectories=2, n_times=4)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(DataFileError, match="locking: false"):
            open_hdf5(path)
        layout = {**canonical_layout(path), "locking": False}
        source = HDF5Source(layout_from_dict(layout))
        read = source.read("vorticity", 1, slice(None))
        source.close()
    finally:
        writer.communicate("done\n", timeout=30)
    np.testing.assert_array_equal(read[:, 0], values[1])


# chunk caches and warnings


def test_cache_holds_chunks_of_sample_groups(tmp_path):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 8, 8, 8))
    spec = layout_from_dict(canonical_layout(path)).fields["vorticity"]
    plan = ReadPlan(time_span=2, n_read_times=2, n_groups=4)
    with h5py.File(path, "r") as handle:
        geometry = chunk_geometry(handle["fields/vorticity"], spec, plan)
    assert geometry.chunk_bytes == 8 * 8 * 8 * 4
    assert geometry.chunks_per_sample == 2
    assert geometry.samples_per_chunk == 8
    assert geometry.filtered
    n_slots, n_bytes = cache_settings(geometry, plan, max_bytes=2**30)
    assert n_bytes == 2**20
    assert n_slots == next_prime(n_slots)
    assert n_slots >= 100 * (n_bytes // geometry.chunk_bytes)
    _, capped = cache_settings(geometry, plan, max_bytes=5000)
    assert capped == 5000


def test_source_opens_datasets_with_planned_cache(tmp_path):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 8, 8, 8))
    layout = layout_from_dict({**canonical_layout(path), "cache_bytes": 16384})
    source = HDF5Source(layout)
    source.plan_reads(ReadPlan(time_span=2, n_read_times=2, n_groups=4))
    source.read("vorticity", 0, slice(3, 5))
    dataset = source._datasets[0, "fields/vorticity"]
    n_slots, n_bytes, _ = dataset.id.get_access_plist().get_chunk_cache()
    assert n_bytes == 16384
    assert n_slots == next_prime(n_slots)
    source.close()


def test_many_small_chunks_warn_once(tmp_path, caplog):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 1, 1, 8), n_times=4, n_grid=80)
    source = HDF5Source(layout_from_dict(canonical_layout(path)))
    with caplog.at_level(logging.WARNING, logger="surrogates.data.chunks"):
        source.plan_reads(ReadPlan(time_span=2, n_read_times=2))
        source.plan_reads(ReadPlan(time_span=2, n_read_times=2))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "reads 1600 chunks" in messages[0]
    assert "'fields/vorticity' with chunks (1, 1, 1, 8)" in messages[0]
    assert "h5repack -l fields/vorticity:CHUNK=1x1x80x80" in messages[0]


def test_chunk_of_many_batches_warns(tmp_path, caplog):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 64, 8, 8), n_times=65)
    source = HDF5Source(layout_from_dict(canonical_layout(path)))
    with caplog.at_level(logging.WARNING, logger="surrogates.data.chunks"):
        source.check_chunking(batch_size=4)
        source.check_chunking(batch_size=16)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "one chunk holds 64 samples, more than 8 batches of 4" in messages[0]
    assert "ChunkSampler" in messages[0]


def test_undersized_cache_warns(tmp_path, caplog):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 8, 8, 8))
    layout = layout_from_dict({**canonical_layout(path), "cache_bytes": 1024})
    source = HDF5Source(layout)
    with caplog.at_level(logging.WARNING, logger="surrogates.data.chunks"):
        source.plan_reads(ReadPlan(time_span=2, n_read_times=2))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "cannot hold the 4096 bytes" in messages[0]


# chunk-aware order


def test_chunk_sampler_visits_every_sample_once():
    groups = [list(range(i, i + 5)) for i in range(0, 50, 5)]
    sampler = ChunkSampler(groups, seed=1)
    for epoch in range(3):
        sampler.set_position(epoch, 0)
        assert sorted(sampler) == list(range(50))
    shares = []
    for rank in range(3):
        ranked = ChunkSampler(groups, seed=1, rank=rank, world_size=3)
        ranked.set_position(2, 0)
        shares.append(list(ranked))
    assert sorted(i for share in shares for i in share) == list(range(50))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_chunk_sampler_resumes_mid_epoch():
    groups = [list(range(i, i + 4)) for i in range(0, 40, 4)]
    sampler = ChunkSampler(groups, seed=7, batch_size=3, num_workers=2)
    sampler.set_position(epoch=2, start=0)
    full = list(sampler)
    sampler.set_position(epoch=2, start=13)
    assert list(sampler) == full[13:]
    assert len(sampler) == len(full) - 13
    sampler.set_position(epoch=3, start=0)
    assert list(sampler) != full


def test_chunk_sampler_keeps_groups_together():
    groups = [list(range(i, i + 8)) for i in range(0, 64, 8)]
    sampler = ChunkSampler(groups, seed=3, n_interleave=2)
    order = list(sampler)
    for first in range(0, 64, 16):
        block_groups = {index // 8 for index in order[first : first + 16]}
        assert len(block_groups) == 2


def test_chunk_sampler_feeds_loader_workers(tmp_path):
    path = tmp_path / "waves.h5"
    write_chunked(path, (4, 2, 8, 8), n_trajectories=32, n_times=2)
    source = HDF5Source(layout_from_dict(canonical_layout(path)))
    dataset = StepDataset(source, range(32), TASK, IDENTITY)
    sampler = ChunkSampler.for_dataset(dataset, seed=0, batch_size=4, num_workers=2)
    loader = make_loader(dataset, batch_size=4, sampler=sampler, num_workers=2)
    seen = torch.cat([batch["trajectory"] for batch in loader]).tolist()
    assert seen == [dataset.index[i][0] for i in sampler]
    assert sorted(seen) == list(range(32))


def test_deal_batches_gives_each_worker_one_piece():
    order = np.arange(20)
    dealt = deal_batches(order, n_workers=2, batch_size=3)
    assert sorted(dealt.tolist()) == list(range(20))
    batches = [dealt[i : i + 3] for i in range(0, 18, 3)]
    assert all(b.max() < 10 for b in batches[0::2])
    assert all(b.min() >= 10 for b in batches[1::2])


class CountingFile(io.FileIO):
    """A file object that records the offset of every read HDF5 makes."""

    def __init__(self, path) -> None:
        super().__init__(path, "r")
        self.offsets: list[int] = []

    def readinto(self, buffer) -> int:
        self.offsets.append(self.tell())
        return super().readinto(buffer)


def chunk_reads(
    tmp_path, monkeypatch, make_sampler, chunks=(1, 8, 8, 8), n_trajectories=2
) -> tuple[dict, int]:
    """Stream one epoch; return reads per chunk address and the sample count.

    The chunk cache has room for the chunks of 4 samples, far fewer than the file has.
    """
    path = tmp_path / "waves.h5"
    n_times = 129 if chunks[1] == 8 else 2
    write_chunked(path, chunks, n_trajectories, n_times)
    files: list[CountingFile] = []

    def counting_open(name, *, locking=None):
        files.append(CountingFile(name))
        return h5py.File(files[-1], "r")

    monkeypatch.setattr(source_module, "open_hdf5", counting_open)
    chunks_per_sample = 2 if n_times > 2 else 1
    cache_bytes = 4 * chunks_per_sample * int(np.prod(chunks)) * 4
    layout = layout_from_dict({**canonical_layout(path), "cache_bytes": cache_bytes})
    source = HDF5Source(layout)
    dataset = StepDataset(source, range(n_trajectories), TASK, IDENTITY)
    for index in make_sampler(dataset):
        dataset[index]
    source.close()
    with h5py.File(path, "r") as handle:
        info = handle["fields/vorticity"].id
        n_chunks = info.get_num_chunks()
        addresses = [info.get_chunk_info(i).byte_offset for i in range(n_chunks)]
    offsets = [o for f in files for o in f.offsets]
    for f in files:
        f.close()
    return {a: offsets.count(a) for a in addresses}, len(dataset)


def test_chunk_order_decompresses_each_chunk_once(tmp_path, monkeypatch):
    def chunk_order(dataset):
        return ChunkSampler.for_dataset(dataset, seed=0)

    reads, n_samples = chunk_reads(tmp_path, monkeypatch, chunk_order)
    # A window [t, t + 1] with t = 7, 15, ..., 127 also reads the next chunk,
    # which may be evicted before that chunk's own group comes: 32 such windows.
    assert n_samples == 256
    assert len(reads) == 34
    assert min(reads.values()) == 1
    assert max(reads.values()) <= 2
    assert sum(reads.values()) <= 34 + 32


def test_chunk_order_reads_packed_chunks_once(tmp_path, monkeypatch):
    def chunk_order(dataset):
        return ChunkSampler.for_dataset(dataset, seed=0)

    reads, n_samples = chunk_reads(
        tmp_path, monkeypatch, chunk_order, chunks=(4, 2, 8, 8), n_trajectories=128
    )
    assert n_samples == 128
    assert len(reads) == 32
    assert set(reads.values()) == {1}


def test_plain_shuffle_decompresses_chunks_many_times(tmp_path, monkeypatch):
    def plain_order(dataset):
        return EpochSampler(len(dataset), seed=0)

    reads, _ = chunk_reads(tmp_path, monkeypatch, plain_order)
    assert sum(reads.values()) > 4 * 34
    packed, _ = chunk_reads(
        tmp_path, monkeypatch, plain_order, chunks=(4, 2, 8, 8), n_trajectories=128
    )
    assert sum(packed.values()) > 2 * 32


def test_chunk_groups_follow_time_chunks(tmp_path):
    path = tmp_path / "waves.h5"
    write_chunked(path, (1, 8, 8, 8), n_times=17)
    source = HDF5Source(layout_from_dict(canonical_layout(path)))
    dataset = StepDataset(source, [0, 1], TASK, IDENTITY)
    groups = chunk_groups(dataset)
    times = [[dataset.index[i] for i in group] for group in groups]
    assert len(groups) == 4
    assert times[0] == [(0, t) for t in range(8)]
    assert times[3] == [(1, t) for t in range(8, 16)]
