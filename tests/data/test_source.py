"""Reading fields through layout configs: values, axis roles and clear errors."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest
from datafiles import (
    canonical_layout,
    pypde_layout,
    write_canonical_file,
    write_pypde_file,
)

from surrogates.data import (
    DataFileError,
    HDF5Source,
    LayoutError,
    NonFiniteValueError,
    layout_from_dict,
)


def source_of(layout: dict) -> HDF5Source:
    return HDF5Source(layout_from_dict(layout))


def test_canonical_round_trip(tmp_path):
    path = tmp_path / "waves.h5"
    values = write_canonical_file(path, n_trajectories=3, n_times=5)
    source = source_of(canonical_layout(path))
    assert source.n_trajectories == 3
    assert source.n_times == 5
    assert source.space_shape == (16, 16)
    read = source.read("vorticity", 2, slice(1, 4))
    assert read.shape == (3, 1, 16, 16)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read[:, 0], values[2, 1:4])
    assert source.fields["vorticity"].units == "1/s"
    np.testing.assert_allclose(source.parameters["viscosity"], [0.01, 0.015, 0.02])
    assert source.grid["time"]["units"] == "s"


def test_axis_order_from_layout(tmp_path):
    # The same values stored as (x, time, component, y, trajectory), big-endian
    # float64, must come back identical in model layout.
    values = np.random.default_rng(0).standard_normal((2, 4, 8, 6, 3))  # traj,t,y,x,c
    stored = values.transpose(3, 1, 4, 2, 0).astype(">f8")
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as handle:
        handle["velocity"] = stored
    layout = {
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {
            "velocity": {
                "path": "velocity",
                "axes": ["x", "time", "component", "y", "trajectory"],
            }
        },
    }
    source = source_of(layout)
    read = source.read("velocity", 1, slice(None))
    assert read.shape == (4, 3, 8, 6)
    assert read.dtype == np.dtype("float32")
    np.testing.assert_allclose(read, values[1].transpose(0, 3, 1, 2), rtol=1e-6)
    assert source.fields["velocity"].n_components == 3


def test_pypde_files_need_no_conversion(tmp_path):
    states = [
        write_pypde_file(tmp_path / f"run{i}.h5", feed, kill, seed=i)
        for i, (feed, kill) in enumerate([(0.04, 0.06), (0.03, 0.062)])
    ]
    source = source_of(pypde_layout(tmp_path / "run*.h5"))
    assert source.n_trajectories == 2
    np.testing.assert_allclose(source.parameters["feed"], [0.04, 0.03])
    np.testing.assert_allclose(source.parameters["kill"], [0.06, 0.062])
    np.testing.assert_allclose(source.grid["time"]["values"], 10.0 * np.arange(6))
    np.testing.assert_allclose(source.grid["x"]["values"][:2], [1.0, 3.0])
    v = source.read("v", 1, slice(None))
    np.testing.assert_allclose(v[:, 0], states[1][:, 1], rtol=1e-6)


def test_missing_file_names_pattern(tmp_path):
    layout = canonical_layout(tmp_path / "absent.h5")
    with pytest.raises(FileNotFoundError, match=r"absent\.h5"):
        source_of(layout)


def test_missing_dataset_names_path(canonical_file):
    layout = canonical_layout(canonical_file)
    layout["fields"]["vorticity"]["path"] = "fields/omega"
    with pytest.raises(DataFileError, match="'fields/omega' not found"):
        source_of(layout)


def test_axis_count_mismatch(canonical_file):
    layout = canonical_layout(canonical_file)
    layout["fields"]["vorticity"]["axes"] = ["time", "y", "x"]
    with pytest.raises(LayoutError, match=r"has shape \(6, 8, 16, 16\)"):
        source_of(layout)


def test_fields_with_disagreeing_shapes(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as handle:
        handle["a"] = np.zeros((2, 4, 8, 8), np.float32)
        handle["b"] = np.zeros((2, 5, 8, 8), np.float32)
    axes = ["trajectory", "time", "y", "x"]
    layout = {
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"a": {"path": "a", "axes": axes}, "b": {"path": "b", "axes": axes}},
    }
    with pytest.raises(DataFileError, match="has 5 entries along 'time'"):
        source_of(layout)


def test_non_numeric_dataset(tmp_path):
    path = tmp_path / "text.h5"
    with h5py.File(path, "w") as handle:
        handle["a"] = np.array([[["x"]]], dtype="S1")
    layout = {
        "files": [str(path)],
        "space": ["x"],
        "fields": {"a": {"path": "a", "axes": ["trajectory", "time", "x"]}},
    }
    with pytest.raises(DataFileError, match="non-numeric dtype"):
        source_of(layout)


def test_truncated_file(canonical_file):
    data = canonical_file.read_bytes()
    canonical_file.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFileError, match="truncated"):
        source_of(canonical_layout(canonical_file))


@pytest.mark.parametrize("chunks", [None, (1, 1, 16, 16)])
def test_truncated_file_with_consistent_end_address(tmp_path, chunks):
    # A cut file whose superblock was updated to the new end, as a copy of a file
    # still being written can be: HDF5 opens it, and fails later on the data.
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("u", data=np.ones((6, 8, 16, 16), "f4"), chunks=chunks)
    size = path.stat().st_size * 2 // 3
    with open(path, "r+b") as raw:
        raw.truncate(size)
        raw.seek(40)  # end-of-file address in a version 0 superblock
        raw.write(struct.pack("<Q", size))
    layout = {
        "name": "cut",
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
    }
    with pytest.raises(DataFileError, match="truncated or damaged") as error:
        source = source_of(layout)
        for trajectory in range(source.n_trajectories):
            source.read("u", trajectory, slice(None))
    assert "cut.h5" in str(error.value)
    assert "'u'" in str(error.value)


def test_nan_names_file_dataset_and_index(tmp_path):
    path = tmp_path / "nan.h5"
    values = write_canonical_file(path, n_trajectories=2, n_times=4)
    values[1, 2, 3, 5] = np.nan
    write_canonical_file(path, n_trajectories=2, n_times=4, vorticity=values)
    source = source_of(canonical_layout(path))
    with pytest.raises(NonFiniteValueError) as error:
        source.read("vorticity", 1, slice(None))
    message = str(error.value)
    assert "nan.h5" in message
    assert "fields/vorticity" in message
    assert "time index 2" in message
    assert "{'y': 3, 'x': 5}" in message


def test_unknown_axis_role_is_rejected(canonical_file):
    layout = canonical_layout(canonical_file)
    layout["fields"]["vorticity"]["axes"] = ["trajectory", "time", "y", "z"]
    with pytest.raises(LayoutError, match="lacks \\['x'\\]"):
        source_of(layout)


def test_unknown_layout_key_is_rejected(canonical_file):
    layout = canonical_layout(canonical_file)
    layout["fields"]["vorticity"]["axis"] = ["time"]
    with pytest.raises(LayoutError, match="unknown keys \\['axis'\\]"):
        source_of(layout)


def test_source_pickles_without_handles(canonical_file):
    import pickle

    source = source_of(canonical_layout(canonical_file))
    source.read("vorticity", 0, slice(0, 1))
    clone = pickle.loads(pickle.dumps(source))
    assert clone._handles == {}
    np.testing.assert_array_equal(
        clone.read("vorticity", 0, slice(0, 2)),
        source.read("vorticity", 0, slice(0, 2)),
    )


def test_truncated_file_is_not_called_a_lock_problem(canonical_file):
    data = canonical_file.read_bytes()
    canonical_file.write_bytes(data[: len(data) - 5000])
    with pytest.raises(DataFileError) as error:
        source_of(canonical_layout(canonical_file))
    assert "truncated" in str(error.value)
    assert "failed to lock" not in str(error.value)
