"""Foreign layouts read through config alone: the Well, PDEBench, snapshots, netCDF."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from datafiles import (
    canonical_layout,
    pdebench_name,
    write_pdebench_file,
    write_snapshot_files,
    write_well_file,
    write_xarray_netcdf,
)

from surrogates.data import (
    DataFileError,
    HDF5Source,
    LayoutError,
    StepDataset,
    StepTask,
    fit_normalizer,
    layout_from_dict,
    make_loader,
)
from surrogates.data import source as source_module

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config_layout(name: str, *files) -> dict:
    """Return the layout of ``configs/data/<name>.yaml`` reading ``files``."""
    config = yaml.safe_load((CONFIGS / "data" / f"{name}.yaml").read_text())
    return {**config["layout"], "files": [str(f) for f in files]}


def source_of(layout: dict) -> HDF5Source:
    return HDF5Source(layout_from_dict(layout))


def open_file_count() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


# the Well


def test_well_files_read_without_conversion(tmp_path):
    (tmp_path / "train").mkdir()
    parameters = [(1e4, 0.5), (5e4, 2.0)]
    written = [
        write_well_file(tmp_path / "train" / f"re{i}.hdf5", reynolds=r, schmidt=s)
        for i, (r, s) in enumerate(parameters)
    ]
    source = source_of(config_layout("the_well_example", tmp_path / "train/*.hdf5"))
    assert source.n_trajectories == 4
    assert source.n_times == 5
    np.testing.assert_allclose(source.parameters["Reynolds"], [1e4, 1e4, 5e4, 5e4])
    np.testing.assert_allclose(source.parameters["Schmidt"], [0.5, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(source.grid["time"]["values"], 0.25 * np.arange(5))
    velocity = source.read("velocity", 3, slice(1, 4))
    assert velocity.shape == (3, 2, 16, 16)
    expected = written[1]["velocity"][1, 1:4].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(velocity, expected)
    tracer = source.read("tracer", 0, slice(None))
    np.testing.assert_array_equal(tracer[:, 0], written[0]["tracer"][0])


# PDEBench


def test_pdebench_time_coordinate_slice(tmp_path):
    path = tmp_path / pdebench_name(0.1)
    variables = write_pdebench_file(path)
    source = source_of(config_layout("pdebench_example", path))
    assert source.n_times == 4
    np.testing.assert_allclose(source.grid["time"]["values"], 0.05 * np.arange(4))
    np.testing.assert_array_equal(
        source.read("Vy", 2, slice(None))[:, 0], variables["Vy"][2]
    )


def test_pdebench_without_slice_names_lengths(tmp_path):
    path = tmp_path / pdebench_name(0.1)
    write_pdebench_file(path)
    layout = config_layout("pdebench_example", path)
    layout["grid"]["time"] = {"path": "t-coordinate"}
    with pytest.raises(DataFileError) as error:
        source_of(layout)
    message = str(error.value)
    assert path.name in message
    assert "'t-coordinate'" in message
    assert "has 5 values" in message
    assert "slice: [0, -1]" in message


# files joined along time


def test_snapshots_joined_in_time_order(tmp_path):
    times = [0.3, 0.0, 0.2, 0.1]  # snap_0000 contains the last time
    values = {}
    for run in ("run_a", "run_b"):
        (tmp_path / run).mkdir()
        values[run] = write_snapshot_files(tmp_path / run, times, seed=len(values))
    layout = config_layout(
        "snapshots_example", tmp_path / "run_a/snap_*.h5", tmp_path / "run_b/snap_*.h5"
    )
    source = source_of(layout)
    assert source.n_trajectories == 2
    assert source.n_times == 4
    np.testing.assert_allclose(source.grid["time"]["values"], [0.0, 0.1, 0.2, 0.3])
    assert source.grid["time"]["units"] == "s"
    np.testing.assert_allclose(source.parameters["viscosity"], [0.01, 0.01])
    read = source.read("rho", 1, slice(None))
    assert read.shape == (4, 1, 8, 12)
    np.testing.assert_array_equal(read[:, 0], values["run_b"][0])
    first_file = (tmp_path / "run_b" / "snap_0001.h5").resolve()
    assert source.locate(1, 0) == (first_file, 0, 0)


def test_snapshots_with_trajectory_axis(tmp_path):
    values = write_snapshot_files(tmp_path, [0.0, 0.5, 1.0], n_trajectories=3)
    layout = config_layout("snapshots_example", tmp_path / "snap_*.h5")
    layout["fields"]["rho"]["axes"] = ["trajectory", "y", "x"]
    source = source_of(layout)
    assert source.n_trajectories == 3
    np.testing.assert_array_equal(
        source.read("rho", 2, slice(0, 3, 2))[:, 0], values[2, ::2]
    )


def test_duplicate_time_names_both_files(tmp_path):
    write_snapshot_files(tmp_path, [0.0, 0.1, 0.1])
    layout = config_layout("snapshots_example", tmp_path / "snap_*.h5")
    with pytest.raises(DataFileError) as error:
        source_of(layout)
    message = str(error.value)
    assert "snap_0001.h5" in message
    assert "snap_0002.h5" in message
    assert "time 0.1" in message


def test_missing_time_attribute(tmp_path):
    write_snapshot_files(tmp_path, [0.0, 0.1])
    with h5py.File(tmp_path / "snap_0001.h5", "r+") as handle:
        del handle.attrs["time"]
    with pytest.raises(DataFileError) as error:
        source_of(config_layout("snapshots_example", tmp_path / "snap_*.h5"))
    message = str(error.value)
    assert "snap_0001.h5" in message
    assert "root attribute 'time' not found" in message
    assert "Fix 'attribute'" in message
    assert open_file_count() == 0


def test_time_blocks_read_across_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((2, 9, 8, 8)).astype(np.float32)
    for i, start in enumerate((6, 0, 3)):  # file order differs from time order
        with h5py.File(tmp_path / f"part{i}.h5", "w") as handle:
            handle["u"] = values[:, start : start + 3]
            handle["t"] = 0.5 * np.arange(start, start + 3)
    layout = {
        "join": "time",
        "files": [str(tmp_path / "part*.h5")],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
        "grid": {"time": {"path": "t"}},
    }
    monkeypatch.setattr(source_module, "MAX_OPEN_FILES", 2)
    source = source_of(layout)
    read = source.read("u", 1, slice(1, 8, 2))
    np.testing.assert_array_equal(read[:, 0], values[1, 1:8:2])
    assert len(source._handles) == 2
    np.testing.assert_allclose(source.grid["time"]["values"], 0.5 * np.arange(9))


def test_joined_samples_match_with_workers(tmp_path):
    write_snapshot_files(tmp_path, [0.2 * i for i in range(6)], n_trajectories=4)
    layout = config_layout("snapshots_example", tmp_path / "snap_*.h5")
    layout["fields"]["rho"]["axes"] = ["trajectory", "y", "x"]
    source = source_of(layout)
    task = StepTask(input_fields=("rho",), output_fields=("rho",))
    normalizer = fit_normalizer(source, [0, 1, 2, 3], ["rho"], [])
    dataset = StepDataset(source, [0, 2, 3], task, normalizer)
    serial = [dataset[i] for i in range(len(dataset))]
    loader = make_loader(dataset, batch_size=4, num_workers=2)
    loader.multiprocessing_context = "fork"
    batches = list(loader)
    for key in ("inputs", "targets"):
        parallel = torch.cat([b[key] for b in batches])
        assert torch.equal(parallel, torch.stack([s[key] for s in serial])), key


# netCDF-4 written by xarray


def test_netcdf_written_by_xarray(tmp_path):
    path = tmp_path / "run.nc"
    dataset = write_xarray_netcdf(path)
    source = source_of(config_layout("xarray_netcdf_example", path))
    assert source.n_trajectories == 3
    assert source.fields["vorticity"].units == "1/s"
    assert source.grid["x"]["units"] == "m"
    np.testing.assert_allclose(source.grid["x"]["values"], dataset["x"].values)
    np.testing.assert_allclose(source.parameters["viscosity"], [0.01, 0.02, 0.03])
    velocity = source.read("velocity", 1, slice(None))
    assert velocity.dtype == np.float32
    expected = dataset["velocity"].values[1].astype(np.float32)
    np.testing.assert_array_equal(velocity, expected)


def test_netcdf_swapped_axes_rejected(tmp_path):
    path = tmp_path / "run.nc"
    write_xarray_netcdf(path)
    layout = config_layout("xarray_netcdf_example", path)
    layout["fields"]["vorticity"]["axes"] = ["trajectory", "time", "x", "y"]
    with pytest.raises(LayoutError) as error:
        source_of(layout)
    message = str(error.value)
    assert "run.nc" in message
    assert "'/vorticity'" in message
    assert "['sample', 'time', 'y', 'x']" in message


# axis roles, dtypes and attribute encodings


@pytest.mark.parametrize(
    ("axes", "order"),
    [
        (["component", "trajectory", "time", "y", "x"], (4, 0, 1, 2, 3)),
        (["trajectory", "time", "y", "x", "component"], (0, 1, 2, 3, 4)),
    ],
)
def test_component_axis_first_or_last(tmp_path, axes, order):
    values = np.random.default_rng(2).standard_normal((2, 3, 8, 6, 3))  # b,t,y,x,c
    path = tmp_path / "vector.h5"
    with h5py.File(path, "w") as handle:
        handle["v"] = np.moveaxis(values, 4, order.index(4)).astype("f4")
    layout = {
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"v": {"path": "v", "axes": axes}},
    }
    source = source_of(layout)
    assert source.fields["v"].n_components == 3
    read = source.read("v", 1, slice(None))
    np.testing.assert_array_equal(read, values[1].transpose(0, 3, 1, 2).astype("f4"))


@pytest.mark.parametrize("dtype", [">f8", "<f8", ">f4", "<i4"])
def test_dtype_and_byte_order_become_float32(tmp_path, dtype):
    values = np.random.default_rng(3).standard_normal((2, 3, 8, 8)) * 100
    path = tmp_path / "typed.h5"
    with h5py.File(path, "w") as handle:
        handle["u"] = values.astype(dtype)
    layout = {
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
    }
    read = source_of(layout).read("u", 0, slice(None))
    assert read.dtype == np.dtype("float32")
    assert read.dtype.isnative
    expected = values[0].astype(dtype).astype(np.float32)
    np.testing.assert_array_equal(read[:, 0], expected)


@pytest.mark.parametrize(
    "units",
    [
        "m/s",
        b"m/s",
        np.bytes_(b"m/s"),
        np.array(b"m/s"),
        np.array([b"m/s"]),
        np.array(["m/s"], dtype=h5py.string_dtype()),
    ],
    ids=["str", "bytes", "numpy-bytes", "bytes-shape-()", "bytes-shape-(1,)", "vlen"],
)
def test_units_attribute_encodings(canonical_file, units):
    with h5py.File(canonical_file, "r+") as handle:
        for path in ("fields/vorticity", "parameters/viscosity", "grid/x"):
            handle[path].attrs["units"] = units
    source = source_of(canonical_layout(canonical_file))
    for text in (
        source.fields["vorticity"].units,
        source.parameter_units["viscosity"],
        source.grid["x"]["units"],
    ):
        assert type(text) is str
        assert text == "m/s"


def write_size_one_axis(path) -> np.ndarray:
    values = np.random.default_rng(4).standard_normal((1, 5, 1, 8, 8)).astype("f4")
    with h5py.File(path, "w") as handle:
        handle["u"] = values
    return values


def test_size_one_axis_selected(tmp_path):
    values = write_size_one_axis(tmp_path / "slab.h5")
    layout = {
        "files": [str(tmp_path / "slab.h5")],
        "space": ["y", "x"],
        "fields": {
            "u": {
                "path": "u",
                "axes": ["trajectory", "time", "z", "y", "x"],
                "select": {"z": 0},
            }
        },
    }
    source = source_of(layout)
    assert source.n_trajectories == 1
    np.testing.assert_array_equal(
        source.read("u", 0, slice(None))[:, 0], values[0, :, 0]
    )


def test_size_one_axis_never_dropped(tmp_path):
    write_size_one_axis(tmp_path / "slab.h5")
    layout = {
        "files": [str(tmp_path / "slab.h5")],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
    }
    with pytest.raises(LayoutError) as error:
        source_of(layout)
    message = str(error.value)
    assert "slab.h5" in message
    assert "has shape (1, 5, 1, 8, 8)" in message
    assert "including axes of size 1" in message


# bad inputs: clear errors, no file left open


def bad_layout_cases(path) -> dict[str, tuple[dict, tuple[str, ...]]]:
    def changed(change) -> dict:
        layout = canonical_layout(path)
        change(layout)
        return layout

    field = "fields/vorticity"
    return {
        "too many axes": (
            changed(
                lambda c: c["fields"]["vorticity"].update(
                    axes=["trajectory", "time", "z", "y", "x"], select={"z": 0}
                )
            ),
            (f"'{field}'", "(6, 8, 16, 16)", "5 axes", "list one role per axis"),
        ),
        "missing attribute": (
            changed(lambda c: c["parameters"].update(viscosity={"attribute": "nu"})),
            ("root attribute 'nu' not found", "['format']", "Fix 'attribute'"),
        ),
        "select out of range": (
            changed(
                lambda c: c["fields"]["vorticity"].update(
                    axes=["run", "time", "y", "x"], select={"run": 6}
                )
            ),
            (f"'{field}'", "select: {run: 6}", "from 0 to 5"),
        ),
        "grid axis length": (
            changed(lambda c: c["grid"].update(x={"path": "grid/time"})),
            ("'grid/time'", "has 8 values", "16 along it", "'slice'"),
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["too many axes", "missing attribute", "select out of range", "grid axis length"],
)
def test_bad_layout_error_names_file_and_fix(canonical_file, case):
    layout, phrases = bad_layout_cases(canonical_file)[case]
    with pytest.raises(ValueError) as error:
        source_of(layout)
    message = str(error.value)
    assert str(canonical_file) in message
    for phrase in phrases:
        assert phrase in message
    assert open_file_count() == 0


# layout keys


def test_layout_round_trip_with_new_keys(tmp_path):
    layout = layout_from_dict(config_layout("pdebench_example", tmp_path / "a.h5"))
    assert layout_from_dict(layout.to_dict()) == layout
    assert layout.to_dict()["grid"]["time"]["slice"] == [0, -1]
    snapshots = layout_from_dict(config_layout("snapshots_example", tmp_path / "b.h5"))
    assert layout_from_dict(snapshots.to_dict()) == snapshots


def test_layout_without_new_keys_loads(canonical_file):
    stored = canonical_layout(canonical_file)  # as checkpoints of older runs hold it
    layout = layout_from_dict(stored)
    assert layout.join == "trajectory"
    assert layout.grid["time"].slice is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"join": "space"}, "join='space' is not one of"),
        ({"grid": {"time": {"bounds": [0, 1], "slice": [0, -1]}}}, "'slice' trims"),
        ({"grid": {"time": {"path": "t", "slice": [0, 4, 0]}}}, "positive step"),
        ({"grid": {"time": {"path": "t", "attribute": "t"}}}, "one source"),
        ({"join": "time", "grid": {}}, "grid.time needs 'attribute'"),
    ],
)
def test_layout_rejects_bad_keys(canonical_file, change, match):
    with pytest.raises(LayoutError, match=match):
        layout_from_dict({**canonical_layout(canonical_file), **change})


@pytest.mark.parametrize(
    "name",
    [
        "the_well_example",
        "pdebench_example",
        "snapshots_example",
        "xarray_netcdf_example",
    ],
)
def test_example_configs_compose_for_training(name):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base=None):
        config = compose("train", overrides=[f"data={name}"])
    assert config.data.layout.name == name
    layout = layout_from_dict(config_layout(name, "unused.h5"))
    assert set(config.data.task.input_fields) <= set(layout.fields)


def test_grid_axis_from_attribute_array(canonical_file):
    with h5py.File(canonical_file, "r+") as handle:
        handle.attrs["x_centres"] = np.arange(17) * 0.5
    layout = canonical_layout(canonical_file)
    layout["grid"]["x"] = {"attribute": "x_centres", "slice": [1, None], "units": "m"}
    source = source_of(layout)
    np.testing.assert_allclose(source.grid["x"]["values"], 0.5 * np.arange(1, 17))
    assert source.grid["x"]["units"] == "m"
