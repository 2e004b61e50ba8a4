"""Argument checks shared by the solvers, raising errors that name the fix."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def validate_solver_settings(
    n_grid: int,
    domain_length: float,
    forcing_wavenumber: int,
    drag: float,
    cfl: float,
    max_dt: float,
    dtype: torch.dtype,
) -> None:
    """Raise ValueError unless the Navier-Stokes solver settings are usable."""
    if int(n_grid) != n_grid or n_grid < 8:
        raise ValueError(f"got n_grid={n_grid}; expected an integer >= 8")
    if not domain_length > 0:
        raise ValueError(f"got domain_length={domain_length}; it must be positive")
    if int(forcing_wavenumber) != forcing_wavenumber or forcing_wavenumber < 1:
        raise ValueError(
            f"got forcing_wavenumber={forcing_wavenumber}; expected an integer >= 1 "
            "so that the forcing is periodic on the domain"
        )
    if forcing_wavenumber >= n_grid / 3:
        raise ValueError(
            f"got forcing_wavenumber={forcing_wavenumber} for n_grid={n_grid}; "
            "the forcing must lie below the dealiasing cutoff n_grid / 3, so "
            "increase n_grid or lower forcing_wavenumber"
        )
    if not drag >= 0:
        raise ValueError(f"got drag={drag}; it must be >= 0")
    if not 0 < cfl <= 1:
        raise ValueError(
            f"got cfl={cfl}; expected 0 < cfl <= 1 (the explicit stage becomes "
            "unstable near 0.95)"
        )
    if not max_dt > 0:
        raise ValueError(f"got max_dt={max_dt}; it must be positive")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"got dtype={dtype}; expected torch.float32 or torch.float64")


def check_vorticity(vorticity: Tensor, n_grid: int) -> None:
    """Raise unless ``vorticity`` is a real floating ``(B, n_grid, n_grid)`` tensor."""
    if not isinstance(vorticity, Tensor):
        raise TypeError(
            f"got vorticity of type {type(vorticity).__name__}; expected a torch.Tensor"
        )
    if vorticity.ndim != 3 or tuple(vorticity.shape[1:]) != (n_grid, n_grid):
        raise ValueError(
            f"got vorticity of shape {tuple(vorticity.shape)}; expected "
            f"(B, {n_grid}, {n_grid}) to match the solver's n_grid"
        )
    if vorticity.is_complex() or not vorticity.is_floating_point():
        raise ValueError(
            f"got vorticity of dtype {vorticity.dtype}; expected a real floating dtype"
        )


def as_batch_parameter(
    value: Tensor | float,
    batch_size: int,
    name: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Return ``value`` as a ``(batch_size,)`` tensor, broadcasting a single number."""
    tensor = torch.as_tensor(value, device=device, dtype=dtype)
    if tensor.ndim == 0:
        return tensor.expand(batch_size)
    if tuple(tensor.shape) != (batch_size,):
        raise ValueError(
            f"got {name} of shape {tuple(tensor.shape)}; expected ({batch_size},), one "
            "value per trajectory, or a single number"
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"got {name}={tensor.tolist()}; all values must be finite")
    return tensor


def fixed_step_count(duration: float, dt: float) -> int:
    """Return ``duration / dt`` as an integer, or raise if it is not one."""
    if not dt > 0:
        raise ValueError(f"got dt={dt}; it must be positive")
    n_steps = round(duration / dt)
    if not math.isclose(n_steps * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"got duration={duration} and dt={dt}; duration must be a whole number of "
            "steps, so pick dt = duration / n for an integer n"
        )
    return n_steps


def raise_diverged(elapsed: float, duration: float) -> None:
    """Raise FloatingPointError for a solution that became NaN or infinite."""
    raise FloatingPointError(
        f"the solution became NaN or infinite within {elapsed:.4g} of {duration:.4g} "
        "time units; lower dt (or cfl and max_dt), or raise n_grid or viscosity"
    )
