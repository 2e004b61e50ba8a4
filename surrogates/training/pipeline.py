"""From a layout config to a trained surrogate: data, models, trainer, checkpoint."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data import (
    HDF5Source,
    Normalizer,
    StepDataset,
    StepTask,
    fit_normalizer,
    layout_from_dict,
    split_trajectories,
)
from surrogates.data.masking import encode_mask
from surrogates.models import PatchDiscriminator, TemporalDiscriminator, UNetGenerator
from surrogates.training import checkpoint as ckpt
from surrogates.training.device import resolve_device
from surrogates.training.options import TrainingOptions
from surrogates.training.rng import seed_everything
from surrogates.training.trainer import Trainer
from surrogates.training.unroll import check_feedback_task

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedData:
    """A source with its trajectory split, fitted normalization and datasets."""

    source: HDF5Source
    task: StepTask
    splits: dict[str, list[int]]
    normalizer: Normalizer

    def dataset(self, split: str) -> StepDataset:
        """Return the step samples of ``split`` (``train``, ``valid`` or ``test``)."""
        return StepDataset(self.source, self.splits[split], self.task, self.normalizer)

    def metadata(self) -> dict[str, Any]:
        """Return what a checkpoint stores to rebuild this data view."""
        grid = {
            axis: {"values": info["values"].tolist(), "units": info["units"]}
            for axis, info in self.source.grid.items()
        }
        return {
            "layout": self.source.layout.to_dict(),
            "task": dataclasses.asdict(self.task),
            "splits": self.splits,
            "normalization": self.normalizer.to_dict(),
            "data": self.source.describe(),
            "grid": grid,
            "mask": encode_mask(self.source.mask),
        }


def prepare_data(
    layout: Mapping[str, Any],
    task: Mapping[str, Any],
    *,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    splits: Mapping[str, Sequence[int]] | None = None,
    normalization: Mapping[str, Any] | None = None,
) -> PreparedData:
    """Open the data of a layout, split it by trajectory and fit normalization.

    ``splits`` and ``normalization`` from an earlier run (a checkpoint) are reused
    as they are. Otherwise the split is drawn with ``split_seed``, and statistics are
    fitted on the training trajectories alone.
    """
    source = HDF5Source(layout_from_dict(layout))
    step_task = StepTask(**task)
    for name in {*step_task.input_fields, *step_task.output_fields}:
        if name not in source.fields:
            raise KeyError(
                f"task names field {name!r}, but layout {source.layout.name!r} has "
                f"fields {sorted(source.fields)}; fix task.input_fields or "
                "task.output_fields in the data config"
            )
    for name in step_task.conditions:
        if name not in source.parameters:
            raise KeyError(
                f"task names condition {name!r}, but layout {source.layout.name!r} "
                f"has parameters {sorted(source.parameters)}; fix task.conditions "
                "in the data config"
            )
    if splits is None:
        splits = split_trajectories(source.n_trajectories, split_fractions, split_seed)
        _warn_small_splits(splits)
    splits = {k: list(v) for k, v in splits.items()}
    if normalization is None:
        fields = sorted({*step_task.input_fields, *step_task.output_fields})
        normalizer = fit_normalizer(
            source, splits["train"], fields, step_task.conditions
        )
        _warn_constant_conditions(source, splits["train"], step_task.conditions)
        # Fitting read every training value; reading the held-out trajectories once
        # here makes NaN or inf there fail before training, not after it.
        for trajectory in splits["valid"] + splits["test"]:
            for name in fields:
                source.read_trajectory(name, trajectory)
    else:
        normalizer = Normalizer.from_dict(normalization)
    source.close()
    return PreparedData(source, step_task, splits, normalizer)


MIN_HELD_OUT_TRAJECTORIES = 3
"""Fewer validation or test trajectories than this log a warning."""


def _warn_constant_conditions(source, train: Sequence[int], names) -> None:
    # A condition without variation gives the generator nothing to learn from.
    for name in names:
        values = np.asarray(source.parameters[name])[list(train)]
        if values.min() == values.max():
            log.warning(
                "condition %r is %g in every training trajectory, so the surrogate "
                "cannot learn its effect; check where the layout reads it (for "
                "example its filename_regex) or drop it from task.conditions",
                name,
                values[0],
            )


RESUME_DATA_KEYS = ("files", "n_trajectories", "n_times", "space")
"""Data properties that a resumed run must share with its checkpoint."""


def _check_same_data(stored: Mapping[str, Any], current: Mapping[str, Any], path):
    # A resumed run keeps the stored split and normalization, which are only
    # right for the data they were made from.
    changed = [
        f"{key} {stored[key]!r} -> {current.get(key)!r}"
        for key in RESUME_DATA_KEYS
        if key in stored and stored[key] != current.get(key)
    ]
    if changed:
        log.warning(
            "resuming from %s with other data than it was trained on (%s); the "
            "stored split and normalization are kept, so the run is no longer the "
            "one that was started. Point the layout at the original files, or "
            "start a new run directory",
            path,
            "; ".join(changed),
        )


def _warn_small_splits(splits: Mapping[str, Sequence[int]]) -> None:
    # Metrics over one or two held-out trajectories vary with which ones they are.
    for name in ("valid", "test"):
        count = len(splits[name])
        if 0 < count < MIN_HELD_OUT_TRAJECTORIES:
            log.warning(
                "the %s split has %d trajectories, so its metrics depend on which "
                "ones they are; write more trajectories or raise its fraction in "
                "split_fractions",
                name,
                count,
            )


def model_arguments(
    data: PreparedData, model: Mapping[str, Any], *, temporal_window: int = 0
) -> dict[str, dict]:
    """Complete the generator and discriminator arguments with data-given sizes.

    With ``temporal_window > 0`` the result also has ``temporal_discriminator``
    arguments. Those take ``base_channels`` and ``n_layers`` from
    ``model["discriminator"]`` unless ``model["temporal_discriminator"]`` sets them.
    """
    task = data.task
    n_in = sum(data.source.fields[f].n_components for f in task.input_channel_fields)
    n_out = sum(data.source.fields[f].n_components for f in task.output_fields)
    periodic = bool(model.get("periodic", True))
    shared = {"n_conditions": len(task.conditions), "periodic": periodic}
    generator = {
        **dict(model.get("generator", {})),
        **shared,
        "in_channels": n_in * task.n_steps_input,
        "out_channels": n_out,
        "residual": task.residual,
    }
    discriminator = {
        **dict(model.get("discriminator", {})),
        **shared,
        "in_channels": n_in * task.n_steps_input,
        "target_channels": n_out,
    }
    arguments = {"generator": generator, "discriminator": discriminator}
    if temporal_window > 0:
        sizes = ("base_channels", "n_layers")
        temporal = {k: v for k, v in discriminator.items() if k in sizes}
        arguments["temporal_discriminator"] = {
            **temporal,
            **dict(model.get("temporal_discriminator", {})),
            **shared,
            "state_channels": n_out,
            "window": temporal_window,
        }
    return arguments


def task_for_training(
    task: Mapping[str, Any], options: TrainingOptions
) -> dict[str, Any]:
    """Return ``task`` with the output steps that ``options`` train on.

    ``n_steps_output`` becomes ``unroll_steps`` when that is larger. Unrolling and
    the temporal discriminator feed outputs back as inputs, so their task is
    checked for that here.

    Raises
    ------
    ValueError
        If ``options`` feed outputs back and an input field is not an output field,
        or ``temporal_window`` is longer than the input and unrolled states.
    """
    task = dict(task)
    if options.n_steps_output > task.get("n_steps_output", 1):
        task["n_steps_output"] = options.n_steps_output
    check_feedback_task(StepTask(**task), options)
    return task


def train_surrogate(
    *,
    layout: Mapping[str, Any],
    task: Mapping[str, Any],
    model: Mapping[str, Any],
    training: Mapping[str, Any],
    run_dir: Path | str,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Train a surrogate and return the path of its final checkpoint.

    With ``resume=True`` and a checkpoint in ``run_dir``, the split and the
    normalization statistics stored there are reused and training continues from
    its step. With ``unroll_steps > 1`` the task's ``n_steps_output`` is raised to
    it (:func:`task_for_training`), and with ``temporal_weight > 0`` a
    :class:`~surrogates.models.TemporalDiscriminator` is trained too.
    """
    run_dir = Path(run_dir)
    options = TrainingOptions.from_mapping(training)
    task = task_for_training(task, options)
    previous = ckpt.latest_checkpoint(run_dir / "checkpoints") if resume else None
    stored = ckpt.load_checkpoint(previous, with_state=False).meta if previous else {}
    data = prepare_data(
        layout,
        task,
        split_fractions=split_fractions,
        split_seed=split_seed,
        splits=stored.get("splits"),
        normalization=stored.get("normalization"),
    )
    if stored:
        _check_same_data(stored.get("data", {}), data.source.describe(), previous)
    window = options.temporal_window if options.temporal_weight > 0 else 0
    arguments = model_arguments(data, model, temporal_window=window)
    seed_everything(options.seed)  # the initial weights depend on the seed alone
    generator = UNetGenerator(**arguments["generator"])
    discriminator = PatchDiscriminator(**arguments["discriminator"])
    temporal = None
    if "temporal_discriminator" in arguments:
        temporal = TemporalDiscriminator(**arguments["temporal_discriminator"])
    trainer = Trainer(
        generator,
        discriminator,
        data.dataset("train"),
        run_dir,
        options,
        device=resolve_device(device),
        meta={**data.metadata(), "model": arguments, **dict(extra_meta or {})},
        valid_dataset=data.dataset("valid"),
        temporal_discriminator=temporal,
    )
    trainer.fit(resume=resume)
    return ckpt.latest_checkpoint(run_dir / "checkpoints")
