"""Small HDF5 files in known layouts, written by the tests themselves."""

from __future__ import annotations

import h5py
import numpy as np

N_GRID = 16


def wave_field(n_trajectories: int, n_times: int, n_grid: int = N_GRID) -> np.ndarray:
    """Travelling waves, distinct per trajectory: ``(n_traj, n_times, y, x)``."""
    x = np.arange(n_grid) * 2 * np.pi / n_grid
    t = np.arange(n_times)[:, None, None]
    values = np.stack(
        [
            np.sin(x[None, None, :] + 0.4 * t * (1 + i)) * np.cos(x[None, :, None] + i)
            for i in range(n_trajectories)
        ]
    )
    return values.astype(np.float32)


def write_canonical_file(
    path,
    n_trajectories: int = 6,
    n_times: int = 8,
    n_grid: int = N_GRID,
    *,
    vorticity: np.ndarray | None = None,
) -> np.ndarray:
    """Write a small file in the canonical layout and return its vorticity."""
    values = (
        wave_field(n_trajectories, n_times, n_grid) if vorticity is None else vorticity
    )
    x = np.arange(n_grid) * 2 * np.pi / n_grid
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "coolmathgans-1"
        field = handle.create_dataset(
            "fields/vorticity", data=values, chunks=(1, 1, n_grid, n_grid)
        )
        field.attrs["units"] = "1/s"
        field.attrs["long_name"] = "vorticity"
        viscosity = handle.create_dataset(
            "parameters/viscosity", data=np.linspace(0.01, 0.02, n_trajectories)
        )
        viscosity.attrs["units"] = "m^2/s"
        handle.create_dataset("grid/time", data=0.5 * np.arange(n_times))
        handle["grid/time"].attrs["units"] = "s"
        for axis in ("x", "y"):
            handle.create_dataset(f"grid/{axis}", data=x)
            handle[f"grid/{axis}"].attrs["units"] = "m"
    return values


def canonical_layout(path) -> dict:
    """Layout config of :func:`write_canonical_file`."""
    return {
        "name": "waves",
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {
            "vorticity": {
                "path": "fields/vorticity",
                "axes": ["trajectory", "time", "y", "x"],
            }
        },
        "parameters": {"viscosity": {"path": "parameters/viscosity"}},
        "grid": {
            "time": {"path": "grid/time"},
            "x": {"path": "grid/x"},
            "y": {"path": "grid/y"},
        },
    }


TASK = {
    "input_fields": ["vorticity"],
    "output_fields": ["vorticity"],
    "conditions": ["viscosity"],
}

TINY_MODEL = {
    "generator": {
        "base_channels": 8,
        "channel_multipliers": [1, 2],
        "noise_channels": 2,
    },
    "discriminator": {"base_channels": 8, "n_layers": 2},
}


def gray_scott_states(
    n_times: int, feed: float, kill: float, n_grid: int = N_GRID, seed: int = 0
) -> np.ndarray:
    """Integrate Gray-Scott with explicit Euler on a periodic grid: ``(T, 2, x, y)``.

    Diffusivities 0.2 (u) and 0.1 (v), grid spacing 1, time step 0.5; states are
    stored every 20 steps. Small and fast, for writing py-pde files in tests.
    """
    rng = np.random.default_rng(seed)
    u = np.ones((n_grid, n_grid))
    v = np.zeros((n_grid, n_grid))
    centre = slice(n_grid // 2 - 2, n_grid // 2 + 2)
    v[centre, centre] = 0.5
    v += 0.05 * rng.random((n_grid, n_grid))

    def laplace(a):
        return sum(np.roll(a, s, axis) for s in (1, -1) for axis in (0, 1)) - 4 * a

    states = []
    for _ in range(n_times):
        states.append(np.stack([u, v]))
        for _ in range(20):
            reaction = u * v * v
            u = u + 0.5 * (0.2 * laplace(u) - reaction + feed * (1 - u))
            v = v + 0.5 * (0.1 * laplace(v) + reaction - (feed + kill) * v)
    return np.stack(states)


def write_pypde_file(path, feed: float, kill: float, n_times: int = 6, seed: int = 0):
    """Write a Gray-Scott run with py-pde's ``FileStorage``; return the states."""
    import pde

    n_grid = N_GRID
    grid = pde.CartesianGrid([[0, 32], [0, 32]], [n_grid, n_grid], periodic=True)
    state = pde.FieldCollection(
        [pde.ScalarField(grid, label="u"), pde.ScalarField(grid, label="v")]
    )
    storage = pde.FileStorage(str(path), info={"F": feed, "k": kill})
    states = gray_scott_states(n_times, feed, kill, n_grid, seed)
    storage.start_writing(state)
    for i, values in enumerate(states):
        state.data[...] = values
        storage.append(state, time=10.0 * i)
    storage.end_writing()
    return states


def pypde_layout(pattern) -> dict:
    """Layout config of files from :func:`write_pypde_file`."""
    return {
        "name": "gray_scott",
        "files": [str(pattern)],
        "space": ["x", "y"],
        "fields": {
            "u": {
                "path": "data",
                "axes": ["time", "field", "x", "y"],
                "select": {"field": 0},
            },
            "v": {
                "path": "data",
                "axes": ["time", "field", "x", "y"],
                "select": {"field": 1},
            },
        },
        "parameters": {"feed": {"attribute": "F"}, "kill": {"attribute": "k"}},
        "grid": {
            "time": {"path": "times"},
            "x": {"bounds": [0, 32]},
            "y": {"bounds": [0, 32]},
        },
    }


def write_well_file(
    path,
    *,
    reynolds: float,
    schmidt: float,
    n_trajectories: int = 2,
    n_times: int = 5,
    n_grid: int = N_GRID,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write one file of the Well's HDF5 format (2D, one parameter set per file).

    Follows the specification in docs/data_format.md of PolymathicAI/the_well:
    ``t0_fields/tracer`` ``(B, T, x, y)``, ``t1_fields/velocity`` ``(B, T, x, y, 2)``,
    ``scalars/`` of shape ``()`` (Reynolds) and ``(1,)`` (Schmidt), ``dimensions/``,
    ``boundary_conditions/``. Returns the field arrays.
    """
    rng = np.random.default_rng(seed)
    shape = (n_trajectories, n_times, n_grid, n_grid)
    tracer = rng.standard_normal(shape).astype(np.float32)
    velocity = rng.standard_normal((*shape, 2)).astype(np.float32)
    coordinates = (np.arange(n_grid) + 0.5) / n_grid
    with h5py.File(path, "w") as handle:
        handle.attrs["dataset_name"] = "well_example"
        handle.attrs["grid_type"] = "cartesian"
        handle.attrs["n_spatial_dims"] = 2
        handle.attrs["n_trajectories"] = n_trajectories
        handle.attrs["simulation_parameters"] = ["Reynolds", "Schmidt"]
        handle.attrs["Reynolds"] = reynolds
        handle.attrs["Schmidt"] = schmidt
        dimensions = handle.create_group("dimensions")
        dimensions.attrs["spatial_dims"] = ["x", "y"]
        dimensions.create_dataset("time", data=0.25 * np.arange(n_times, dtype="f4"))
        for axis in ("x", "y"):
            dimensions.create_dataset(axis, data=coordinates.astype("f4"))
            dimensions[axis].attrs["sample_varying"] = False
            dimensions[axis].attrs["time_varying"] = False
        boundary = handle.create_group("boundary_conditions/x_periodic")
        boundary.attrs["associated_dims"] = ["x"]
        boundary.attrs["bc_type"] = "PERIODIC"
        mask = np.zeros(n_grid, dtype=bool)
        mask[[0, -1]] = True
        boundary.create_dataset("mask", data=mask)
        scalars = handle.create_group("scalars")
        scalars.attrs["field_names"] = ["Reynolds", "Schmidt"]
        scalars.create_dataset("Reynolds", data=np.float32(reynolds))
        scalars.create_dataset("Schmidt", data=np.array([schmidt], dtype="f4"))
        for group, name, values in (
            ("t0_fields", "tracer", tracer),
            ("t1_fields", "velocity", velocity),
        ):
            handle.create_group(group).attrs["field_names"] = [name]
            dataset = handle[group].create_dataset(name, data=values)
            dataset.attrs["dim_varying"] = [True, True]
            dataset.attrs["sample_varying"] = True
            dataset.attrs["time_varying"] = True
        handle.create_group("t2_fields").attrs["field_names"] = []
    return {"tracer": tracer, "velocity": velocity}


def pdebench_name(mach: float, eta: float = 0.01, zeta: float = 0.01) -> str:
    """Return a PDEBench-style CFD file name that carries the run's parameters."""
    return f"2D_CFD_M{float(mach)}_Eta{float(eta)}_Zeta{float(zeta)}_Train.hdf5"


def write_pdebench_file(
    path, *, n_samples: int = 3, n_times: int = 4, n_grid: int = N_GRID, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a 2D file laid out like PDEBench's CFD files; return the variables.

    One dataset per variable of shape ``(n_samples, n_times, x, y)``, and
    ``t-coordinate`` with ``n_times + 1`` entries (the last one extra). PDEBench
    keeps the parameters only in the file name, see :func:`pdebench_name`.
    """
    rng = np.random.default_rng(seed)
    shape = (n_samples, n_times, n_grid, n_grid)
    variables = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name in ("density", "pressure", "Vx", "Vy")
    }
    with h5py.File(path, "w") as handle:
        for name, values in variables.items():
            handle.create_dataset(name, data=values)
        handle.create_dataset("t-coordinate", data=0.05 * np.arange(n_times + 1))
        grid = (np.arange(n_grid) + 0.5) / n_grid
        handle.create_dataset("x-coordinate", data=grid)
        handle.create_dataset("y-coordinate", data=grid)
    return variables


def write_snapshot_files(
    directory, times, *, n_trajectories: int | None = None, seed: int = 0
) -> np.ndarray:
    """Write one snapshot per file, ``snap_0000.h5``..., time in root attr ``time``.

    Files are numbered in the order of ``times``, so the names need not sort like
    the times. ``rho`` has shape ``(y, x)``, or ``(trajectory, y, x)`` when
    ``n_trajectories`` is given. Returns the values sorted by time,
    ``(n_trajectories or 1, n_times, y, x)``.
    """
    rng = np.random.default_rng(seed)
    n_local = n_trajectories or 1
    values = rng.standard_normal((n_local, len(times), 8, 12)).astype(np.float32)
    for i, time in enumerate(times):
        with h5py.File(directory / f"snap_{i:04d}.h5", "w") as handle:
            handle.attrs["time"] = time
            handle.attrs["viscosity"] = 0.01
            snapshot = values[:, i] if n_trajectories else values[0, i]
            handle.create_dataset("rho", data=snapshot)
    return values[:, np.argsort(times)]


def write_xarray_netcdf(path, *, n_samples: int = 3, n_times: int = 4, seed: int = 0):
    """Write a netCDF-4 file with xarray and h5netcdf; return the ``xarray.Dataset``.

    ``vorticity`` has dimensions ``(sample, time, y, x)`` and ``velocity``
    ``(sample, time, component, y, x)``; ``viscosity`` is per sample.
    """
    import xarray as xr

    rng = np.random.default_rng(seed)
    ny, nx = 8, 12
    dims = ("sample", "time", "y", "x")
    dataset = xr.Dataset(
        {
            "vorticity": (
                dims,
                rng.standard_normal((n_samples, n_times, ny, nx)).astype("f4"),
                {"units": "1/s"},
            ),
            "velocity": (
                ("sample", "time", "component", "y", "x"),
                rng.standard_normal((n_samples, n_times, 2, ny, nx)),
                {"units": "m/s"},
            ),
            "viscosity": ("sample", np.linspace(0.01, 0.03, n_samples)),
        },
        coords={
            "time": ("time", 0.1 * np.arange(n_times), {"units": "s"}),
            "y": ("y", np.linspace(0, 1, ny), {"units": "m"}),
            "x": ("x", np.linspace(0, 2, nx), {"units": "m"}),
        },
    )
    dataset.to_netcdf(path, engine="h5netcdf")
    return dataset
