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
