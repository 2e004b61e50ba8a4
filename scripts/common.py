"""Helpers shared by the hydra entry points: paths, default data, solver timing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def plain(config: DictConfig | None) -> Any:
    """Return a resolved config node as plain dicts and lists."""
    if config is None:
        return None
    return OmegaConf.to_container(config, resolve=True)


def resolved_layout(data: DictConfig) -> dict[str, Any]:
    """Return the layout with file patterns made absolute against the launch dir."""
    layout = plain(data.layout)
    files = layout["files"]
    files = [files] if isinstance(files, str) else files
    layout["files"] = [to_absolute_path(f) for f in files]
    return layout


def ensure_data(config: DictConfig) -> dict[str, Any]:
    """Return the absolute layout, writing the default dataset first if it is absent.

    With ``make_if_missing: true``, a missing first file of the layout is written
    by the solver of the ``simulate`` config.
    """
    layout = resolved_layout(config.data)
    target = Path(layout["files"][0])
    if target.exists() or not config.data.get("make_if_missing", False):
        return layout
    from simulations.navier_stokes import generate_dataset

    arguments = plain(config.simulate)
    arguments.pop("output", None)
    log.info("data file %s is missing; generating it with the simulate config", target)
    generate_dataset(
        target,
        **arguments,
        config_yaml=OmegaConf.to_yaml(config.simulate),
    )
    return layout


def navier_stokes_advance(path: str | Path, device):
    """Return ``advance(states, conditions, duration)`` for the solver of a file.

    The solver is rebuilt from the file's root attributes, so it is the same
    solver, at the same resolution, that wrote the data. ``states`` is
    ``(B, 1, N, N)`` vorticity, and ``conditions`` contains ``viscosity`` and
    ``forcing_amplitude`` of shape ``(B,)``.
    """
    from simulations.navier_stokes import NavierStokes2D

    with h5py.File(path, "r") as handle:
        solver = NavierStokes2D.from_file_attrs(handle.attrs, device=device)

    def advance(states, conditions: Mapping, duration: float):
        vorticity = states[:, 0].to(solver.dtype)
        result = solver.advance(
            vorticity,
            conditions["viscosity"].to(solver.dtype),
            conditions["forcing_amplitude"].to(solver.dtype),
            duration,
        )
        return result.unsqueeze(1)

    return advance


SOLVERS = {"navier_stokes": navier_stokes_advance}


def solver_advance(name: str | None, layout: Mapping[str, Any], device):
    """Return the timing callable of a reference solver, or None to skip timing."""
    if name is None:
        return None
    if name not in SOLVERS:
        raise ValueError(
            f"evaluation.solver={name!r} is not known; expected one of "
            f"{sorted(SOLVERS)} or null"
        )
    return SOLVERS[name](layout["files"][0], device)
