"""The surrogate users load: sample next states and roll out trajectories."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from surrogates.data import Normalizer, StepTask
from surrogates.data.masking import (
    MaskedOutput,
    decode_mask,
    fill_masked,
    select_valid,
)
from surrogates.emulator.export import dataset_to_canonical
from surrogates.models import UNetGenerator, autoregressive_rollout
from surrogates.training import load_checkpoint, resolve_device

log = logging.getLogger(__name__)


def _check_n_samples(n_samples: int) -> None:
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r}; expected an integer >= 1")


class Surrogate:
    """A trained conditional generator with the normalization of its training data.

    All inputs and outputs are in physical units, in model layout: fields as
    ``(..., C, H, W)`` with channels ordered as ``input_channel_fields`` (inputs) or
    ``output_fields`` (outputs), and conditions as ``(B, n_conditions)`` ordered as
    ``condition_names`` or as a mapping from name to values.

    Use :meth:`load` to build one from a run directory or a checkpoint.
    """

    def __init__(
        self, generator: UNetGenerator, meta: Mapping[str, Any], device: torch.device
    ) -> None:
        self.generator = generator.to(device).eval()
        self.meta = dict(meta)
        self.device = device
        self.task = StepTask(**meta["task"])
        self.normalizer = Normalizer.from_dict(meta["normalization"])
        self.fields = meta["data"]["fields"]
        self.parameter_units = meta["data"]["parameters"]
        self.grid = meta["grid"]
        self.space = tuple(meta["layout"]["space"])
        mask = decode_mask(meta.get("mask"))
        self.mask = None if mask is None else torch.from_numpy(mask).to(device)
        self.checkpoint_path: Path | None = None
        # The generator's outputs are 0.0 at masked points, as in training.
        self._generate = MaskedOutput(self.generator, self.mask)

    @classmethod
    def load(
        cls, path: Path | str, *, device: str = "auto", weights: str = "ema"
    ) -> Surrogate:
        """Load from a run directory, a checkpoints directory or a ``step_*`` one.

        Parameters
        ----------
        weights
            ``"ema"`` (the averaged generator, default) or ``"generator"`` (the
            last raw weights).
        """
        loaded = load_checkpoint(path, with_state=False)
        if weights not in ("ema", "generator"):
            raise ValueError(f"weights={weights!r}; expected 'ema' or 'generator'")
        generator = UNetGenerator(**loaded.meta["model"]["generator"])
        state = loaded.weights[weights]
        if weights == "ema":
            prefix = "module."
            state = {
                k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
            }
        generator.load_state_dict(state)
        log.info("loaded surrogate from %s (%s weights)", loaded.path, weights)
        surrogate = cls(generator, loaded.meta, resolve_device(device))
        surrogate.checkpoint_path = loaded.path
        return surrogate

    # metadata

    @property
    def condition_names(self) -> tuple[str, ...]:
        """Names of the conditions, in the order the generator expects."""
        return self.task.conditions

    @property
    def step_duration(self) -> float:
        """Physical time spanned by one surrogate step, in the time grid's units."""
        times = np.asarray(self.grid["time"]["values"])
        if len(times) < 2:
            return float(self.task.step_stride)
        return float(np.median(np.diff(times))) * self.task.step_stride

    def training_range(self, name: str) -> tuple[float, float]:
        """Return the ``(min, max)`` of a condition over the training trajectories."""
        return self.normalizer.condition_min[name], self.normalizer.condition_max[name]

    # conditions

    def _condition_tensor(self, conditions, batch_size: int | None) -> torch.Tensor:
        names = self.condition_names
        if isinstance(conditions, Mapping):
            missing = [n for n in names if n not in conditions]
            unknown = [n for n in conditions if n not in names]
            if missing or unknown:
                raise KeyError(
                    f"conditions lack {missing} and have unknown names {unknown}; "
                    f"this surrogate needs exactly {list(names)}"
                )
            columns = [np.atleast_1d(np.asarray(conditions[n], float)) for n in names]
            values = np.stack(np.broadcast_arrays(*columns), axis=-1) if names else None
        else:
            values = np.atleast_2d(
                np.asarray(conditions if conditions is not None else [], float)
            )
        if values is None or values.size == 0:
            values = np.zeros((batch_size or 1, 0))
        if values.shape[-1] != len(names):
            raise ValueError(
                f"conditions have {values.shape[-1]} columns; expected "
                f"{len(names)} ordered as {list(names)}"
            )
        if batch_size is not None and values.shape[0] == 1:
            values = np.repeat(values, batch_size, axis=0)
        if not np.isfinite(values).all():
            raise ValueError(f"conditions contain NaN or inf: {values.tolist()}")
        self._warn_out_of_range(values)
        tensor = torch.as_tensor(values, dtype=torch.float64)
        normalized = self.normalizer.normalize_conditions(tensor, names)
        return normalized.float().to(self.device)

    def _warn_out_of_range(self, values: np.ndarray) -> None:
        for column, name in enumerate(self.condition_names):
            low, high = self.training_range(name)
            # A relative tolerance keeps values printed as the bound, such as
            # 0.3 against a stored 0.30000000000000004, inside the range.
            tolerance = 1e-9 * max(abs(low), abs(high), high - low)
            column_values = values[:, column]
            outside = (column_values < low - tolerance) | (
                column_values > high + tolerance
            )
            if outside.any():
                value = values[outside, column][0]
                warnings.warn(
                    f"condition {name}={value:g} is outside the training range "
                    f"[{low:g}, {high:g}]; the surrogate extrapolates there and its "
                    "output may be wrong",
                    RuntimeWarning,
                    stacklevel=3,
                )

    # sampling

    def _normalized_inputs(self, inputs) -> torch.Tensor:
        inputs = torch.as_tensor(inputs, dtype=torch.float32, device=self.device)
        input_shape = tuple(inputs.shape)
        fields = self.task.input_channel_fields
        n_channels = sum(self.fields[f]["n_components"] for f in fields)
        if inputs.ndim == 4:
            inputs = inputs.unsqueeze(1)
        space = tuple(len(self.grid[axis]["values"]) for axis in self.space)
        expected = (self.task.n_steps_input, n_channels, *space)
        if inputs.ndim != 5 or tuple(inputs.shape[1:]) != expected:
            sizes = ", ".join(map(str, expected))
            raise ValueError(
                f"inputs have shape {input_shape}; expected (B, {sizes})"
                f" with channels {list(fields)} on the training grid "
                f"{dict(zip(self.space, space, strict=True))} (or (B, C, H, W) when "
                "one input step is used)"
            )
        if not torch.isfinite(select_valid(inputs, self.mask)).all():
            where = " at valid points" if self.mask is not None else ""
            raise ValueError(
                f"inputs contain NaN or inf{where}; pass finite physical states"
            )
        normalized = self.normalizer.normalize_fields(inputs, fields)
        return fill_masked(normalized, self.mask).flatten(1, 2)

    def _physical(self, normalized: torch.Tensor) -> torch.Tensor:
        # Physical output states, NaN at masked points (outside the domain).
        physical = self.normalizer.denormalize_fields(
            normalized, self.task.output_fields
        )
        return fill_masked(physical, self.mask, float("nan"))

    @torch.no_grad()
    def _step(self, normalized_inputs, normalized_conditions, n_samples: int):
        repeat = (n_samples, *([1] * (normalized_inputs.ndim - 1)))
        inputs = normalized_inputs.repeat(repeat)
        conditions = normalized_conditions.repeat(n_samples, 1)
        outputs = self._generate(inputs, conditions)
        return outputs.view(n_samples, -1, *outputs.shape[1:])

    def sample(self, inputs, conditions=None, n_samples: int = 1) -> torch.Tensor:
        """Draw ``n_samples`` next states for each input.

        Parameters
        ----------
        inputs
            ``(B, n_steps_input, C_in, H, W)`` physical states, oldest first, or
            ``(B, C_in, H, W)`` for one input step.
        conditions
            ``(B, n_conditions)``, ``(n_conditions,)`` for all, or a mapping
            name -> value(s).
        n_samples
            Ensemble size (independent noise draws).

        Returns
        -------
        torch.Tensor
            ``(n_samples, B, C_out, H, W)`` physical states one surrogate step later.
        """
        _check_n_samples(n_samples)
        normalized = self._normalized_inputs(inputs)
        conditions = self._condition_tensor(conditions, normalized.shape[0])
        outputs = self._step(normalized, conditions, n_samples)
        return self._physical(outputs)

    def rollout_tensor(
        self, initial_state, conditions=None, n_steps: int = 1, n_samples: int = 1
    ) -> torch.Tensor:
        """Roll out autoregressively to ``(n_samples, B, n_steps + 1, C, H, W)``.

        Index 0 along the time axis is the newest initial state. Each step feeds the
        generator's own output back in, so errors and noise accumulate as they would
        in a solver replaced by the surrogate.
        """
        task = self.task
        if tuple(task.output_fields) != task.input_channel_fields:
            raise ValueError(
                f"rollout needs the outputs {list(task.output_fields)} to be all of "
                f"the inputs {list(task.input_channel_fields)}; this surrogate can "
                "only sample single steps"
            )
        _check_n_samples(n_samples)
        window = self._normalized_inputs(initial_state)
        batch_size, n_channels = window.shape[0], window.shape[1] // task.n_steps_input
        conditions = self._condition_tensor(conditions, batch_size)
        window = window.repeat(n_samples, 1, 1, 1)
        conditions = conditions.repeat(n_samples, 1)
        with torch.no_grad():
            generated = autoregressive_rollout(
                self._generate, window, conditions, n_steps
            )
        stacked = torch.cat([window[:, None, -n_channels:], generated], dim=1)
        physical = self._physical(stacked)
        return physical.view(n_samples, batch_size, *physical.shape[1:])

    def rollout(
        self,
        initial_state,
        conditions=None,
        n_steps: int = 1,
        n_samples: int = 1,
        *,
        start_time: float = 0.0,
    ) -> xr.Dataset:
        """Roll out one initial state and return a labelled ``xarray.Dataset``.

        Parameters
        ----------
        initial_state
            ``(n_steps_input, C, H, W)`` or ``(C, H, W)`` physical state.
        conditions
            ``(n_conditions,)`` values or a mapping name -> value.
        n_steps
            Number of surrogate steps; the dataset has ``n_steps + 1`` times.
        n_samples
            Ensemble members.
        start_time
            Time coordinate of the initial state.

        Returns
        -------
        xarray.Dataset
            One variable per output field with dims ``(sample, time, *space)``
            (plus ``component`` last for vector fields), coordinates and units from
            the training data, and the conditions as attributes.
        """
        state = torch.as_tensor(np.asarray(initial_state), dtype=torch.float32)
        values = self.rollout_tensor(state.unsqueeze(0), conditions, n_steps, n_samples)
        times = start_time + self.step_duration * np.arange(n_steps + 1)
        condition_values = self._condition_values(conditions)
        return self.to_dataset(values[:, 0].cpu().numpy(), times, condition_values)

    def _condition_values(self, conditions) -> dict[str, float]:
        if isinstance(conditions, Mapping):
            return {
                n: float(np.asarray(conditions[n]).reshape(-1)[0])
                for n in self.condition_names
            }
        flat = np.asarray(conditions if conditions is not None else [], float).reshape(
            -1
        )
        return dict(zip(self.condition_names, flat.tolist(), strict=True))

    def to_dataset(
        self,
        values: np.ndarray,
        times: Sequence[float],
        conditions: Mapping[str, float],
    ) -> xr.Dataset:
        """Label ``(n_samples, n_times, C, H, W)`` output values as a Dataset."""
        coords: dict[str, Any] = {
            "sample": np.arange(values.shape[0]),
            "time": (
                "time",
                np.asarray(times, float),
                {"units": self.grid["time"]["units"]},
            ),
        }
        for axis in self.space:
            coords[axis] = (
                axis,
                np.asarray(self.grid[axis]["values"]),
                {"units": self.grid[axis]["units"]},
            )
        variables = {}
        channel = 0
        for name in self.task.output_fields:
            info = self.fields[name]
            n_components = info["n_components"]
            block = values[:, :, channel : channel + n_components]
            channel += n_components
            attrs = {"units": info["units"], "long_name": info["long_name"]}
            if n_components == 1:
                variables[name] = (
                    ("sample", "time", *self.space),
                    block[:, :, 0],
                    attrs,
                )
            else:
                block = np.moveaxis(block, 2, -1)
                dims = ("sample", "time", *self.space, "component")
                variables[name] = (dims, block, attrs)
        attrs = {f"condition_{k}": v for k, v in conditions.items()}
        attrs["condition_units"] = str(
            {k: self.parameter_units.get(k, "") for k in conditions}
        )
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    def write_hdf5(self, dataset: xr.Dataset, path: Path | str) -> Path:
        """Write a :meth:`rollout` result as canonical HDF5, a trajectory per sample.

        The file is written under a temporary name and renamed when complete.
        With a mask, the file has a ``/mask`` dataset and NaN outside the domain.
        """
        return dataset_to_canonical(
            dataset,
            path,
            space=self.space,
            parameter_units=self.parameter_units,
            source=str(self.checkpoint_path or ""),
            mask=None if self.mask is None else self.mask.cpu().numpy(),
        )
