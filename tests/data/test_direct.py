"""Direct reads by byte offset equal h5py's reads, and fall back where they must."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from datafiles import (
    TASK,
    canonical_layout,
    pypde_layout,
    write_canonical_file,
    write_pypde_file,
    write_snapshot_files,
    write_well_file,
    write_xarray_netcdf,
)

from surrogates.data import (
    DataFileError,
    HDF5Source,
    NonFiniteValueError,
    Normalizer,
    StepDataset,
    StepTask,
    direct,
    fit_normalizer,
    layout_from_dict,
    make_loader,
    source,
)
from surrogates.data.direct import direct_reader
from surrogates.training import prepare_data

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.fixture
def small_runs(monkeypatch):
    """Let the tiny test arrays take the direct path, whatever their run sizes."""
    monkeypatch.setattr(direct, "MIN_RUN_BYTES", 0)


def write_dataset(path, shape, dtype, chunks, **options) -> np.ndarray:
    values = np.random.default_rng(1).normal(size=shape) * 100
    values = values.astype(dtype)
    with h5py.File(path, "w", **options) as handle:
        handle.create_dataset("a", data=values, chunks=chunks)
    return values


def random_index(rng, shape) -> tuple:
    index = []
    for n in shape:
        if rng.random() < 0.3:
            index.append(int(rng.integers(n)))
            continue
        start = int(rng.integers(n))
        stop = int(rng.integers(start + 1, n + 1))
        index.append(slice(start, stop, int(rng.integers(1, 4))))
    return tuple(index)


@contextlib.contextmanager
def open_reader(path, name: str = "a"):
    """Yield the open file and the direct reader of its dataset ``name``."""
    with h5py.File(path, "r") as handle:
        fd = os.open(path, os.O_RDONLY)
        try:
            yield handle, direct_reader(handle[name], fd)
        finally:
            os.close(fd)


def write_first_chunk_only(path) -> None:
    """Write a (4, 8) dataset of (1, 8) chunks whose first chunk alone exists."""
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("a", shape=(4, 8), dtype="f4", chunks=(1, 8))
        dataset[0] = 1.0


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks"),
    [
        ((5, 4, 6, 8), "<f4", None),
        ((5, 4, 6, 8), "<f4", (1, 1, 6, 8)),
        ((5, 4, 6, 8), ">f8", (2, 3, 4, 5)),
        ((7, 3, 8), "<i2", (4, 1, 8)),
        ((9, 10), "<u1", (3, 4)),
    ],
)
def test_direct_reads_equal_h5py(tmp_path, small_runs, shape, dtype, chunks):
    path = tmp_path / "a.h5"
    write_dataset(path, shape, dtype, chunks)
    rng = np.random.default_rng(0)
    with open_reader(path) as (handle, reader):
        for _ in range(200):
            index = random_index(rng, shape)
            expected = handle["a"][index]
            read = reader.read(index)
            assert read.shape == np.shape(expected)
            np.testing.assert_array_equal(read, expected)


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [((9, 6, 4, 8), None), ((9, 6, 4, 8), (1, 1, 4, 8)), ((9, 6, 4, 8), (2, 3, 4, 4))],
)
def test_read_many_equals_single_reads(tmp_path, small_runs, shape, chunks):
    path = tmp_path / "a.h5"
    values = write_dataset(path, shape, "<f4", chunks)
    rng = np.random.default_rng(0)
    with open_reader(path) as (_, reader):
        done = 0
        for _ in range(40):
            n_times = int(rng.integers(1, 4))
            step = int(rng.integers(1, 3))
            last = shape[1] - (n_times - 1) * step
            trajectories = rng.integers(0, shape[0], size=5)
            times = rng.integers(0, last, size=5)
            index = (
                0,
                slice(0, (n_times - 1) * step + 1, step),
                slice(None),
                slice(None),
            )
            outs = np.full((5, n_times, *shape[2:]), np.nan, "f4")
            if not reader.read_many(index, {0: trajectories, 1: times}, outs):
                assert np.isnan(outs).all()
                continue
            done += 1
            for out, tr, t in zip(outs, trajectories, times, strict=True):
                expected = values[tr, t : t + (n_times - 1) * step + 1 : step]
                np.testing.assert_array_equal(out, expected)
    assert done >= 10


def test_read_many_declines_unallocated_chunks(tmp_path, small_runs):
    path = tmp_path / "a.h5"
    write_first_chunk_only(path)
    with open_reader(path) as (_, reader):
        outs = np.zeros((2, 8), "f4")
        assert reader.read_many((0, slice(None)), {0: np.array([0, 0])}, outs)
        assert not reader.read_many((0, slice(None)), {0: np.array([0, 2])}, outs)


def test_direct_reads_skip_the_userblock(tmp_path, small_runs):
    path = tmp_path / "a.h5"
    values = write_dataset(path, (3, 4, 5), "<f4", (1, 4, 5), userblock_size=1024)
    with open_reader(path) as (_, reader):
        np.testing.assert_array_equal(
            reader.read((1, slice(None), slice(1, 4))), values[1, :, 1:4]
        )


def test_direct_read_into_given_array(tmp_path, small_runs):
    path = tmp_path / "a.h5"
    values = write_dataset(path, (3, 2, 4, 4), "<f4", (1, 1, 4, 4))
    out = np.zeros((2, 4, 4), dtype=np.float32)
    with open_reader(path) as (_, reader):
        reader.read((2, slice(None), slice(None), slice(None)), out)
    np.testing.assert_array_equal(out, values[2])


def test_unallocated_chunks_fall_back_to_fill_values(tmp_path, small_runs):
    path = tmp_path / "a.h5"
    write_first_chunk_only(path)
    with open_reader(path) as (_, reader):
        assert reader.read((0, slice(None))) is not None
        assert reader.read((slice(0, 2), slice(None))) is None


@pytest.mark.parametrize("kind", ["gzip", "unwritten", "compound"])
def test_datasets_that_need_hdf5_get_no_direct_reader(tmp_path, kind):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as handle:
        if kind == "gzip":
            handle.create_dataset(
                "a", data=np.ones((4, 8)), chunks=(1, 8), compression="gzip"
            )
        elif kind == "unwritten":
            handle.create_dataset("a", shape=(4, 8), dtype="f4")
        else:
            handle.create_dataset("a", shape=(4,), dtype=[("u", "f4"), ("v", "f4")])
            handle["a"][...] = np.ones(4, dtype=handle["a"].dtype)
    with open_reader(path) as (_, reader):
        assert reader is None


def test_truncated_file_raises_on_direct_read(tmp_path, small_runs):
    path = tmp_path / "a.h5"
    write_dataset(path, (64, 256), "<f4", None)
    with open_reader(path) as (_, reader):
        size = path.stat().st_size
        os.truncate(path, size - 4096)
        with pytest.raises(DataFileError, match="truncated"):
            reader.read((slice(None), slice(None)))


# whole layouts: the direct path returns what h5py returns


def config_layout(name: str, *files) -> dict:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    return {**config["layout"], "files": [str(f) for f in files]}


def layouts(tmp_path) -> dict[str, dict]:
    write_canonical_file(tmp_path / "canonical.h5")
    (tmp_path / "well").mkdir()
    write_well_file(tmp_path / "well" / "a.hdf5", reynolds=1e4, schmidt=0.5)
    write_well_file(tmp_path / "well" / "b.hdf5", reynolds=5e4, schmidt=2.0)
    (tmp_path / "snapshots").mkdir()
    write_snapshot_files(tmp_path / "snapshots", [0.0, 1.0, 0.5, 1.5])
    write_xarray_netcdf(tmp_path / "flow.nc")
    write_pypde_file(tmp_path / "gray_scott.h5", feed=0.04, kill=0.06)
    return {
        "pypde": pypde_layout(tmp_path / "gray_scott.h5"),
        "canonical": canonical_layout(tmp_path / "canonical.h5"),
        "well": config_layout("the_well_example", tmp_path / "well" / "*.hdf5"),
        "snapshots": config_layout(
            "snapshots_example", tmp_path / "snapshots" / "*.h5"
        ),
        "netcdf": config_layout("xarray_netcdf_example", tmp_path / "flow.nc"),
    }


def all_reads(layout: dict) -> list[np.ndarray]:
    src = HDF5Source(layout_from_dict(layout))
    reads = [
        src.read(name, trajectory, times)
        for name in src.fields
        for trajectory in range(src.n_trajectories)
        for times in (slice(None), slice(1, None, 2), slice(2, 3))
    ]
    src.close()
    return reads


def with_and_without_direct_path(tmp_path, monkeypatch, collect):
    """Yield ``(layout name, collect(layout) with, collect(layout) without)``."""
    monkeypatch.setattr(direct, "MIN_RUN_BYTES", 0)
    for name, layout in layouts(tmp_path).items():
        monkeypatch.setattr(source, "direct_reader", direct_reader)
        with_direct = collect(layout)
        monkeypatch.setattr(source, "direct_reader", lambda dataset, fd: None)
        yield name, with_direct, collect(layout)


def test_layouts_read_same_without_direct_path(tmp_path, monkeypatch):
    compared = with_and_without_direct_path(tmp_path, monkeypatch, all_reads)
    for name, with_direct, without in compared:
        for a, b in zip(with_direct, without, strict=True):
            np.testing.assert_array_equal(a, b, strict=True, err_msg=name)


def all_batches(layout: dict) -> list[dict]:
    src = HDF5Source(layout_from_dict(layout))
    field = sorted(src.fields)[0]
    normalizer = fit_normalizer(src, range(src.n_trajectories), [field], [])
    task = StepTask((field,), (field,), step_stride=1, n_steps_output=2)
    dataset = StepDataset(src, range(src.n_trajectories), task, normalizer)
    order = np.random.default_rng(0).permutation(len(dataset)).tolist()
    batches = [dataset.read_batch(order[i : i + 3]) for i in range(0, len(order), 3)]
    src.close()
    return batches


def test_layout_batches_same_without_direct_path(tmp_path, monkeypatch):
    compared = with_and_without_direct_path(tmp_path, monkeypatch, all_batches)
    for name, with_direct, without in compared:
        for a, b in zip(with_direct, without, strict=True):
            for key in a:
                assert torch.equal(a[key], b[key]), (name, key)


@pytest.mark.parametrize("min_run_bytes", [0, direct.MIN_RUN_BYTES])
def test_fields_sharing_a_dataset_read_their_own_values(
    tmp_path, monkeypatch, min_run_bytes
):
    monkeypatch.setattr(direct, "MIN_RUN_BYTES", min_run_bytes)
    states = write_pypde_file(tmp_path / "gray_scott.h5", feed=0.04, kill=0.06)
    src = HDF5Source(layout_from_dict(pypde_layout(tmp_path / "gray_scott.h5")))
    for _ in range(2):  # the second pass reuses the cached index templates
        for channel, name in enumerate(("u", "v")):
            read = src.read(name, 0, slice(1, 5, 2))
            np.testing.assert_allclose(read[:, 0], states[1:5:2, channel], rtol=1e-6)
    src.close()


# batches


def test_batches_equal_normalized_states(canonical_file, small_runs):
    data = prepare_data(
        canonical_layout(canonical_file),
        {**TASK, "n_steps_input": 2, "step_stride": 2, "n_steps_output": 2},
        split_fractions=(0.5, 0.17, 0.33),
    )
    dataset = data.dataset("train")
    assert len(dataset) == len(data.splits["train"]) * (8 - 2 - 4)
    batch = dataset.read_batch([3, 0, 1])
    for b in range(3):
        trajectory, time = int(batch["trajectory"][b]), int(batch["time"][b])
        raw = data.source.read("vorticity", trajectory, slice(None))
        states = data.normalizer.normalize_fields(
            torch.from_numpy(raw[time - 2 : time + 5 : 2]), ["vorticity"]
        )
        assert torch.equal(batch["inputs"][b], states[:2, 0])
        assert torch.equal(batch["targets"][b], states[2])
        assert torch.equal(batch["target_sequence"][b], states[2:])


def test_batches_of_other_output_fields(tmp_path):
    path = tmp_path / "two.h5"
    values = write_canonical_file(path)
    with h5py.File(path, "r+") as handle:
        handle["fields/tracer"] = 2.0 * values
    layout = canonical_layout(path)
    layout["fields"]["tracer"] = {
        "path": "fields/tracer",
        "axes": ["trajectory", "time", "y", "x"],
    }
    src = HDF5Source(layout_from_dict(layout))

    task = StepTask(("vorticity", "tracer"), ("tracer",), n_steps_output=3)
    identity = Normalizer(
        {"vorticity": [0.0], "tracer": [1.0]},
        {"vorticity": [1.0], "tracer": [2.0]},
        {},
        {},
        {},
        {},
    )
    dataset = StepDataset(src, [1, 4], task, identity)
    batch = dataset.read_batch([0, len(dataset) - 1])
    assert batch["inputs"].shape == (2, 2, 16, 16)
    trajectory, time = int(batch["trajectory"][1]), int(batch["time"][1])
    expected_inputs = np.stack(
        [values[trajectory, time], values[trajectory, time] - 0.5]
    )
    np.testing.assert_allclose(
        batch["inputs"][1].numpy(), expected_inputs, rtol=0, atol=1e-6
    )
    expected_targets = values[trajectory, time + 1 : time + 4] - 0.5
    np.testing.assert_allclose(
        batch["target_sequence"][1, :, 0].numpy(), expected_targets, rtol=0, atol=1e-6
    )


def test_nan_in_a_batch_names_the_file(tmp_path):
    path = tmp_path / "waves.h5"
    values = write_canonical_file(path, n_trajectories=4)
    values[2, 5, 3, 1] = np.nan
    write_canonical_file(path, n_trajectories=4, vorticity=values)
    src = HDF5Source(layout_from_dict(canonical_layout(path)))
    identity = Normalizer({"vorticity": [0.0]}, {"vorticity": [1.0]}, {}, {}, {}, {})
    dataset = StepDataset(
        src, range(4), StepTask(("vorticity",), ("vorticity",)), identity
    )
    with pytest.raises(NonFiniteValueError, match=r"waves\.h5.*trajectory 2"):
        list(make_loader(dataset, batch_size=4))


def test_finite_values_whose_sum_overflows_pass(tmp_path):
    path = tmp_path / "big.h5"
    values = np.full((2, 3, 16, 16), 3e38, dtype=np.float32)
    write_canonical_file(path, n_trajectories=2, n_times=3, vorticity=values)
    src = HDF5Source(layout_from_dict(canonical_layout(path)))
    identity = Normalizer({"vorticity": [0.0]}, {"vorticity": [1.0]}, {}, {}, {}, {})
    dataset = StepDataset(
        src, range(2), StepTask(("vorticity",), ("vorticity",)), identity
    )
    batch = dataset.read_batch([0, 1])
    assert torch.equal(batch["targets"], torch.full((2, 1, 16, 16), 3e38))
