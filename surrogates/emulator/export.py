"""Write surrogate output back to HDF5 in the canonical layout of the solvers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

import surrogates
from simulations.canonical import write_canonical

log = logging.getLogger(__name__)


def dataset_to_canonical(
    dataset: xr.Dataset,
    path: Path | str,
    *,
    space: tuple[str, ...],
    parameter_units: dict[str, str] | None = None,
    source: str = "",
    mask: np.ndarray | None = None,
) -> Path:
    """Write a rollout dataset as canonical HDF5, one trajectory per sample.

    Parameters
    ----------
    dataset
        As returned by :meth:`Surrogate.rollout`: variables with dims
        ``(sample, time, *space[, component])`` and attributes
        ``condition_<name>`` holding the conditions.
    space
        Spatial dimension names in the order of the stored arrays.
    parameter_units
        Units of each condition.
    source
        Stored in the root ``config`` attribute, e.g. the checkpoint path.
    mask
        Boolean ``(*space)``, True inside the domain, written as ``/mask``; the
        values outside it may be NaN.
    """
    for name, variable in dataset.data_vars.items():
        expected = ("sample", "time", *space)
        if variable.dims[: len(expected)] != expected:
            raise ValueError(
                f"variable {name!r} has dims {variable.dims}; expected {expected} "
                "(plus 'component' last for vectors), as Surrogate.rollout returns"
            )
    n_samples = dataset.sizes["sample"]
    conditions = {
        key.removeprefix("condition_"): float(value)
        for key, value in dataset.attrs.items()
        if key.startswith("condition_") and key != "condition_units"
    }
    units = parameter_units or {}
    first_axis = dataset[space[0]]
    path = write_canonical(
        path,
        fields={name: variable.values for name, variable in dataset.data_vars.items()},
        parameters={k: np.full(n_samples, v) for k, v in conditions.items()},
        time=dataset["time"].values,
        space={axis: dataset[axis].values for axis in space},
        field_attrs={
            name: {
                "units": variable.attrs.get("units", ""),
                "long_name": variable.attrs.get("long_name", name),
            }
            for name, variable in dataset.data_vars.items()
        },
        parameter_attrs={k: {"units": units.get(k, "")} for k in conditions},
        solver="coolmathgans-surrogate",
        solver_version=surrogates.__version__,
        time_units=dataset["time"].attrs.get("units", ""),
        space_units=first_axis.attrs.get("units", ""),
        config_yaml=f"surrogate: {source}\n" if source else "",
        mask=mask,
    )
    log.info("wrote surrogate output to %s", path)
    return path
