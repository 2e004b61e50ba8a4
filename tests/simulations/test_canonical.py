"""Tests of the canonical HDF5 writer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import h5py
import numpy as np
import pytest

from simulations.canonical import FORMAT, CanonicalWriter, write_canonical

N_TRAJECTORIES, N_TIMES, N_Y, N_X = 3, 4, 8, 6

FIELDS = {
    "density": {"units": "kg/m^3", "long_name": "mass density", "kind": "scalar"},
    "velocity": {
        "units": "m/s",
        "long_name": "velocity",
        "kind": "vector",
        "n_components": 2,
    },
}
PARAMETERS = {"temperature": {"units": "K", "long_name": "temperature"}}


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "density": rng.normal(size=(N_TRAJECTORIES, N_TIMES, N_Y, N_X)),
        "velocity": rng.normal(size=(N_TRAJECTORIES, N_TIMES, N_Y, N_X, 2)),
        "temperature": rng.uniform(1.0, 2.0, size=N_TRAJECTORIES),
    }


def make_writer(path, **overrides) -> CanonicalWriter:
    options = dict(
        n_trajectories=N_TRAJECTORIES,
        time=np.linspace(0.0, 0.3, N_TIMES),
        space={"y": np.arange(N_Y) * 0.5, "x": np.arange(N_X) * 0.25},
        fields=FIELDS,
        parameters=PARAMETERS,
        solver="test-solver",
        solver_version="1.2",
        time_units="s",
        space_units="m",
        config_yaml="a: 1\n",
    )
    options.update(overrides)
    return CanonicalWriter(path, **options)


def write_all(writer: CanonicalWriter, arrays: dict[str, np.ndarray]) -> None:
    writer.write_field("density", arrays["density"])
    writer.write_field("velocity", arrays["velocity"])
    writer.write_parameter("temperature", arrays["temperature"])


def test_round_trip_root_attributes(tmp_path, arrays):
    path = tmp_path / "run.h5"
    with make_writer(path) as writer:
        write_all(writer, arrays)

    with h5py.File(path, "r") as file:
        attrs = dict(file.attrs)
    assert attrs["format"] == FORMAT
    assert attrs["solver"] == "test-solver"
    assert attrs["solver_version"] == "1.2"
    assert attrs["config"] == "a: 1\n"
    assert attrs["n_spatial_dims"] == 2
    assert attrs["boundary"] == "periodic"
    assert list(attrs["space_axes"]) == ["y", "x"]
    created = datetime.fromisoformat(attrs["created"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)


def test_round_trip_fields(tmp_path, arrays):
    path = tmp_path / "run.h5"
    with make_writer(path) as writer:
        write_all(writer, arrays)

    with h5py.File(path, "r") as file:
        density, velocity = file["fields/density"], file["fields/velocity"]
        assert density.shape == (N_TRAJECTORIES, N_TIMES, N_Y, N_X)
        assert velocity.shape == (N_TRAJECTORIES, N_TIMES, N_Y, N_X, 2)
        assert density.dtype == np.float32
        assert velocity.dtype == np.float32
        assert density.chunks == (1, 1, N_Y, N_X)
        assert velocity.chunks == (1, 1, N_Y, N_X, 2)
        assert density.attrs["units"] == "kg/m^3"
        assert density.attrs["long_name"] == "mass density"
        assert density.attrs["kind"] == "scalar"
        assert velocity.attrs["kind"] == "vector"
        assert list(density.attrs["dims"]) == ["trajectory", "time", "y", "x"]
        assert list(velocity.attrs["dims"])[-1] == "component"
        np.testing.assert_array_equal(density[...], arrays["density"].astype("f4"))
        np.testing.assert_array_equal(velocity[...], arrays["velocity"].astype("f4"))


def test_round_trip_grid_and_parameters(tmp_path, arrays):
    path = tmp_path / "run.h5"
    with make_writer(path) as writer:
        write_all(writer, arrays)

    with h5py.File(path, "r") as file:
        time, y, x = file["grid/time"], file["grid/y"], file["grid/x"]
        temperature = file["parameters/temperature"]
        assert time.attrs["units"] == "s"
        assert y.attrs["units"] == "m"
        assert x.attrs["units"] == "m"
        assert time.dtype == np.float32
        np.testing.assert_allclose(time[...], np.linspace(0.0, 0.3, N_TIMES), rtol=1e-6)
        np.testing.assert_allclose(x[...], np.arange(N_X) * 0.25, rtol=0, atol=0)
        assert temperature.shape == (N_TRAJECTORIES,)
        assert temperature.attrs["units"] == "K"
        assert temperature.attrs["long_name"] == "temperature"
        np.testing.assert_array_equal(
            temperature[...], arrays["temperature"].astype("f4")
        )


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_round_trip(tmp_path, arrays, compression):
    path = tmp_path / "run.h5"
    with make_writer(path, compression=compression) as writer:
        write_all(writer, arrays)
    with h5py.File(path, "r") as file:
        assert file["fields/density"].compression == compression
        np.testing.assert_array_equal(
            file["fields/density"][...], arrays["density"].astype("f4")
        )


def test_partial_selections_assemble(tmp_path, arrays):
    path = tmp_path / "run.h5"
    density = arrays["density"]
    with make_writer(path) as writer:
        # one snapshot at a time, an integer time index drops the time axis
        for time_index in range(N_TIMES):
            writer.write_field(
                "density", density[:2, time_index], slice(0, 2), time_index
            )
        # unordered, non-contiguous time indices for the last trajectory
        writer.write_field("density", density[2, [3, 0]], 2, [3, 0])
        writer.write_field("density", density[2:, 1:3], [2], slice(1, 3))
        writer.write_field("velocity", arrays["velocity"])
        writer.write_parameter("temperature", arrays["temperature"])
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["fields/density"][...], density.astype("f4"))


def test_exception_keeps_old_file(tmp_path, arrays):
    path = tmp_path / "run.h5"
    write_canonical(path, fields={"old": np.zeros((1, 1, 2))}, parameters={},
                    time=[0.0], space={"x": [0.0, 1.0]})  # fmt: skip

    with pytest.raises(RuntimeError, match="solver crashed"), make_writer(path) as w:
        w.write_field("density", arrays["density"])
        raise RuntimeError("solver crashed")

    with h5py.File(path, "r") as file:
        assert list(file["fields"]) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_complete_write_replaces_old_file(tmp_path, arrays):
    path = tmp_path / "run.h5"
    write_canonical(path, fields={"old": np.zeros((1, 1, 2))}, parameters={},
                    time=[0.0], space={"x": [0.0, 1.0]})  # fmt: skip
    with make_writer(path) as writer:
        write_all(writer, arrays)
    with h5py.File(path, "r") as file:
        assert sorted(file["fields"]) == ["density", "velocity"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_incomplete_write_raises(tmp_path, arrays):
    path = tmp_path / "run.h5"
    with pytest.raises(ValueError, match="incomplete") as error, make_writer(path) as w:
        w.write_field("density", arrays["density"][:, :3], times=slice(0, 3))
        w.write_field("velocity", arrays["velocity"])
    message = str(error.value)
    assert "'density' lacks 3 of 12 snapshots" in message
    assert "trajectory 0, time index 3" in message
    assert "parameter 'temperature' was never written" in message
    assert list(tmp_path.iterdir()) == []


def test_nan_rejected_with_index(tmp_path, arrays):
    density = arrays["density"].copy()
    density[1, 2, 3, 4] = np.nan
    with (
        pytest.raises(ValueError, match="NaN") as error,
        make_writer(tmp_path / "run.h5") as writer,
    ):
        writer.write_field("density", density[1:], slice(1, 3))
    message = str(error.value)
    assert "/fields/density" in message
    assert "(1, 2, 3, 4)" in message
    assert list(tmp_path.iterdir()) == []


def test_nan_allowed_outside_the_mask(tmp_path, arrays):
    mask = np.ones((N_Y, N_X), dtype=bool)
    mask[1, 2:4] = False
    for name in ("density", "velocity"):
        arrays[name][:, :, 1, 2:4] = np.nan
    path = tmp_path / "run.h5"
    with make_writer(path, mask=mask) as writer:
        write_all(writer, arrays)
    with h5py.File(path, "r") as file:
        assert np.array_equal(file["mask"][...].astype(bool), mask)
        density = file["fields/density"][...]
    assert np.isnan(density[:, :, ~mask]).all()
    assert np.isfinite(density[:, :, mask]).all()


def test_nan_inside_the_mask_rejected(tmp_path, arrays):
    mask = np.ones((N_Y, N_X), dtype=bool)
    mask[0, 0] = False
    arrays["velocity"][0, 1, 1, 1, 0] = np.nan
    with (
        pytest.raises(ValueError, match="NaN"),
        make_writer(tmp_path / "run.h5", mask=mask) as writer,
    ):
        write_all(writer, arrays)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["shape", "empty"])
def test_bad_mask_rejected(tmp_path, bad):
    mask = np.zeros((N_Y, N_X), dtype=bool)
    if bad == "shape":
        mask = np.ones((N_X, N_Y + 1), dtype=bool)
    with pytest.raises(ValueError, match="mask"):
        make_writer(tmp_path / "run.h5", mask=mask)


def test_float32_overflow_rejected(tmp_path, arrays):
    with (
        pytest.raises(ValueError, match="float32"),
        make_writer(tmp_path / "run.h5") as writer,
    ):
        writer.write_parameter("temperature", np.array([1.0, 1e300, 2.0]))


def test_unknown_field_rejected(tmp_path, arrays):
    with (
        pytest.raises(KeyError, match="pressure"),
        make_writer(tmp_path / "run.h5") as writer,
    ):
        writer.write_field("pressure", arrays["density"])


def test_wrong_shape_rejected(tmp_path, arrays):
    with (
        pytest.raises(ValueError, match=r"expected \(3, 4, 8, 6\)"),
        make_writer(tmp_path / "run.h5") as writer,
    ):
        writer.write_field("density", arrays["density"][..., :5])


def test_complex_values_rejected(tmp_path, arrays):
    with (
        pytest.raises(ValueError, match="complex"),
        make_writer(tmp_path / "run.h5") as writer,
    ):
        writer.write_field("density", arrays["density"] * 1j)


def test_reserved_attribute_rejected(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        make_writer(tmp_path / "run.h5", attrs={"format": "other"})


def test_vector_field_needs_components(tmp_path):
    fields = {"v": {"units": "1", "long_name": "v", "kind": "vector"}}
    with pytest.raises(ValueError, match="n_components"):
        make_writer(tmp_path / "run.h5", fields=fields)


def test_write_canonical_infers_kind(tmp_path, arrays):
    path = write_canonical(
        tmp_path / "nested" / "run.h5",
        fields={"density": arrays["density"], "velocity": arrays["velocity"]},
        parameters={"temperature": arrays["temperature"]},
        time=np.arange(N_TIMES),
        space={"y": np.arange(N_Y), "x": np.arange(N_X)},
        field_attrs={"density": {"units": "kg/m^3"}},
    )
    with h5py.File(path, "r") as file:
        assert file["fields/density"].attrs["kind"] == "scalar"
        assert file["fields/density"].attrs["units"] == "kg/m^3"
        assert file["fields/velocity"].attrs["kind"] == "vector"
        assert file["fields/velocity"].shape[-1] == 2
        assert file["parameters/temperature"].attrs["units"] == "1"


@pytest.mark.parametrize("time", [[], [0.0, np.nan]])
def test_invalid_time_grid_rejected(tmp_path, time):
    with pytest.raises(ValueError, match="/grid/time"):
        make_writer(tmp_path / "run.h5", time=time)


def test_write_outside_context_rejected(tmp_path, arrays):
    writer = make_writer(tmp_path / "run.h5")
    with pytest.raises(RuntimeError, match="not open"):
        writer.write_parameter("temperature", arrays["temperature"])
