"""Reference dataset of forced 2D Navier-Stokes (Kolmogorov flow) in canonical HDF5.

``generate_dataset`` draws one viscosity and one forcing amplitude per trajectory,
spins each trajectory up from a random vorticity field, and records snapshots of
the vorticity at a fixed interval. The solver itself is
``simulations.navier_stokes_solver.NavierStokes2D``, re-exported here.

Written file (canonical layout, see ``simulations.canonical``)::

    /fields/vorticity          (n_trajectories, n_snapshots, y, x)
    /fields/velocity           (n_trajectories, n_snapshots, y, x, 2), if requested,
                               components (u_x, u_y)
    /parameters/viscosity, /parameters/forcing_amplitude     (n_trajectories,)
    /grid/time                 (n_snapshots,), 0 at the end of the spin-up
    /grid/y, /grid/x           (n_grid,), points i L / N
    root attrs: solver_settings (JSON of NavierStokes2D.settings), spinup_time, seed
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from simulations.canonical import CanonicalWriter
from simulations.navier_stokes_solver import SETTINGS_ATTR, NavierStokes2D

__all__ = ["NavierStokes2D", "generate_dataset", "sample_parameters"]

log = logging.getLogger(__name__)

SOLVER_NAME = "simulations.navier_stokes"
SOLVER_VERSION = "1"
"""Stored in each file; increase it whenever a solver change alters the values."""

FIELDS = {
    "vorticity": {
        "units": "1",
        "long_name": "vorticity d(u_y)/dx - d(u_x)/dy (nondimensional)",
        "kind": "scalar",
    },
}
VELOCITY_FIELD = {
    "units": "1",
    "long_name": "velocity (u_x, u_y) (nondimensional)",
    "kind": "vector",
    "n_components": 2,
}
PARAMETERS = {
    "viscosity": {"units": "1", "long_name": "kinematic viscosity nu"},
    "forcing_amplitude": {
        "units": "1",
        "long_name": "amplitude A of the vorticity forcing A sin(2 pi k_f y / L)",
    },
}


def sample_parameters(
    n_trajectories: int,
    viscosity_range: Sequence[float],
    forcing_range: Sequence[float],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw per-trajectory parameters, each ``(n_trajectories,)`` float64.

    Viscosity is log-uniform on ``viscosity_range`` and forcing amplitude uniform on
    ``forcing_range``; a range with equal ends gives a constant.
    """
    low_nu, high_nu = _check_range(viscosity_range, "viscosity_range", positive=True)
    low_a, high_a = _check_range(forcing_range, "forcing_range", positive=False)
    draws = torch.rand((2, n_trajectories), generator=generator, dtype=torch.float64)
    log_nu = math.log(low_nu) + (math.log(high_nu) - math.log(low_nu)) * draws[0]
    amplitude = low_a + (high_a - low_a) * draws[1]
    return torch.exp(log_nu), amplitude


def generate_dataset(
    path: str | Path,
    *,
    n_trajectories: int,
    n_grid: int,
    n_snapshots: int,
    snapshot_interval: float,
    spinup_time: float,
    viscosity_range: Sequence[float],
    forcing_range: Sequence[float],
    seed: int,
    batch_size: int,
    domain_length: float = 2.0 * math.pi,
    forcing_wavenumber: int = 4,
    drag: float = 0.1,
    cfl: float = 0.5,
    max_dt: float = 0.1,
    initial_peak_wavenumber: float = 4.0,
    initial_rms_velocity: float = 1.0,
    write_velocity: bool = False,
    device: str = "cpu",
    dtype: str = "float64",
    n_threads: int | None = None,
    compression: str | None = None,
    config_yaml: str = "",
) -> Path:
    """Simulate Kolmogorov flows and write them as one canonical HDF5 file.

    Parameters
    ----------
    path : str or Path
        Output file; written atomically, so an existing file is replaced only when
        the new one is complete.
    n_trajectories, n_grid, n_snapshots : int
        Trajectories, grid points per axis, and snapshots per trajectory.
    snapshot_interval : float
        Time between stored snapshots (time units).
    spinup_time : float
        Time simulated from the random initial field before the first snapshot,
        which is stored at time 0.
    viscosity_range, forcing_range : sequence of two floats
        Bounds of the log-uniform viscosity and the uniform forcing amplitude.
    seed : int
        Seed of the CPU ``torch.Generator`` that draws the parameters and then the
        initial fields, in that order, so a run is reproducible on any device.
    batch_size : int
        Trajectories integrated together; they share one adaptive time step. On
        CPU, batches of about 4 fields of 64^2 ran fastest, because larger work
        tensors make each FFT fault in fresh memory pages. On GPU, use more.
    domain_length, forcing_wavenumber, drag, cfl, max_dt
        ``NavierStokes2D`` settings, stored in the root attribute
        ``solver_settings``.
    initial_peak_wavenumber, initial_rms_velocity : float
        Spectrum peak (mode number) and root-mean-square speed of the random
        initial vorticity.
    write_velocity : bool
        Also store the velocity as the vector field ``velocity``.
    device : str
        Torch device of the solver, for example ``"cpu"`` or ``"cuda"``.
    dtype : {"float64", "float32"}
        Solver precision. The file always stores float32.
    n_threads : int, optional
        CPU threads torch may use during this call (``torch.set_num_threads``),
        restored afterwards. None leaves the current setting.
    compression : {None, "gzip", "lzf"}
        HDF5 filter of the fields.
    config_yaml : str
        YAML text stored as the root attribute ``config``. When empty, the
        arguments of this call are stored instead.

    Returns
    -------
    Path
        The written file.
    """
    arguments = {
        key: value
        for key, value in locals().items()
        if key not in ("path", "config_yaml")
    }
    arguments["viscosity_range"] = [float(v) for v in viscosity_range]
    arguments["forcing_range"] = [float(v) for v in forcing_range]
    _check_counts(
        n_trajectories, n_snapshots, batch_size, snapshot_interval, spinup_time
    )
    if dtype not in ("float32", "float64"):
        raise ValueError(f"got dtype={dtype!r}; expected 'float32' or 'float64'")
    solver = NavierStokes2D(
        n_grid,
        domain_length=domain_length,
        forcing_wavenumber=forcing_wavenumber,
        drag=drag,
        cfl=cfl,
        max_dt=max_dt,
        device=device,
        dtype=getattr(torch, dtype),
    )
    generator = torch.Generator().manual_seed(int(seed))
    viscosity, amplitude = sample_parameters(
        n_trajectories, viscosity_range, forcing_range, generator
    )
    fields = dict(FIELDS, velocity=VELOCITY_FIELD) if write_velocity else FIELDS
    y, x = solver.coordinates()
    writer = CanonicalWriter(
        path,
        n_trajectories=n_trajectories,
        time=[index * snapshot_interval for index in range(n_snapshots)],
        space={"y": y.cpu().numpy(), "x": x.cpu().numpy()},
        fields=fields,
        parameters=PARAMETERS,
        solver=SOLVER_NAME,
        solver_version=SOLVER_VERSION,
        time_units="1",
        space_units="1",
        config_yaml=config_yaml or yaml.safe_dump(arguments, sort_keys=False),
        compression=compression,
        attrs={
            SETTINGS_ATTR: json.dumps(solver.settings),
            "spinup_time": float(spinup_time),
            "seed": int(seed),
        },
    )

    log.info(
        "simulating %d trajectories on a %d^2 grid (%d snapshots every %g after a "
        "spin-up of %g), viscosity in %s, forcing amplitude in %s, on %s",
        n_trajectories, n_grid, n_snapshots, snapshot_interval, spinup_time,
        arguments["viscosity_range"], arguments["forcing_range"], device,
    )  # fmt: skip
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    try:
        if n_threads is not None:
            torch.set_num_threads(int(n_threads))
        with writer:
            writer.write_parameter("viscosity", viscosity.numpy())
            writer.write_parameter("forcing_amplitude", amplitude.numpy())
            _simulate_batches(
                solver, writer, generator, viscosity, amplitude, arguments
            )
    finally:
        torch.set_num_threads(previous_threads)
    log.info(
        "simulated %d trajectories in %.1f s (%d solver steps)",
        n_trajectories, time.perf_counter() - start, solver.n_steps_taken,
    )  # fmt: skip
    return writer.path


def _simulate_batches(
    solver: NavierStokes2D,
    writer: CanonicalWriter,
    generator: torch.Generator,
    viscosity: torch.Tensor,
    amplitude: torch.Tensor,
    arguments: dict[str, Any],
) -> None:
    n_trajectories, batch_size = arguments["n_trajectories"], arguments["batch_size"]
    n_snapshots = arguments["n_snapshots"]
    n_batches = math.ceil(n_trajectories / batch_size)
    progress = tqdm(total=n_batches * n_snapshots, unit="snapshot", disable=None)
    with progress:
        for first in range(0, n_trajectories, batch_size):
            batch = slice(first, min(first + batch_size, n_trajectories))
            nu = viscosity[batch].to(solver.device)
            forcing = amplitude[batch].to(solver.device)
            vorticity = solver.random_initial_vorticity(
                batch.stop - batch.start,
                generator=generator,
                peak_wavenumber=arguments["initial_peak_wavenumber"],
                rms_velocity=arguments["initial_rms_velocity"],
            )
            log.info(
                "spinning up trajectories %d to %d of %d",
                batch.start, batch.stop - 1, n_trajectories,
            )  # fmt: skip
            vorticity = solver.advance(vorticity, nu, forcing, arguments["spinup_time"])

            for index in range(n_snapshots):
                if index > 0:
                    vorticity = solver.advance(
                        vorticity, nu, forcing, arguments["snapshot_interval"]
                    )
                _write_snapshot(
                    solver, writer, vorticity, batch, index, arguments["write_velocity"]
                )
                progress.update()


def _write_snapshot(
    solver: NavierStokes2D,
    writer: CanonicalWriter,
    vorticity: torch.Tensor,
    batch: slice,
    index: int,
    write_velocity: bool,
) -> None:
    writer.write_field("vorticity", vorticity.cpu().numpy(), batch, index)
    if write_velocity:
        u_x, u_y = solver.velocity(vorticity)
        velocity = torch.stack([u_x, u_y], dim=-1)
        writer.write_field("velocity", velocity.cpu().numpy(), batch, index)


def _check_range(
    bounds: Sequence[float], name: str, positive: bool
) -> tuple[float, float]:
    values = [float(v) for v in bounds]
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(
            f"got {name}={list(bounds)}; expected [low, high], low <= high"
        )
    if positive and values[0] <= 0:
        raise ValueError(f"got {name}={values}; both ends must be positive")
    return values[0], values[1]


def _check_counts(
    n_trajectories: int,
    n_snapshots: int,
    batch_size: int,
    snapshot_interval: float,
    spinup_time: float,
) -> None:
    for name, value in (
        ("n_trajectories", n_trajectories),
        ("n_snapshots", n_snapshots),
        ("batch_size", batch_size),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"got {name}={value}; expected an integer >= 1")
    if not snapshot_interval > 0:
        raise ValueError(f"got snapshot_interval={snapshot_interval}; must be > 0")
    if not spinup_time >= 0:
        raise ValueError(f"got spinup_time={spinup_time}; must be >= 0")
