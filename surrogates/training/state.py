"""Saving a trainer to a checkpoint and restoring a trainer from one.

The weights keep the names that evaluation and emulation read: ``generator``,
``ema`` (the ``AveragedModel`` state, keys prefixed ``module.`` plus
``n_averaged``), ``discriminator`` and, when the run trains one,
``temporal_discriminator``. The state contains optimizer and loss-scaler states
(``optimizer_temporal`` and ``scaler_temporal`` for the temporal discriminator),
every random generator state, the data position and the health counters.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from surrogates.training.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
)
from surrogates.training.rng import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


def trainer_state(trainer) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Return ``(weights, state)`` of a :class:`~surrogates.training.Trainer`."""
    weights = {
        "generator": trainer.generator.state_dict(),
        "ema": trainer.ema.state_dict(),
        "discriminator": trainer.discriminator.state_dict(),
    }
    state = {
        "optimizer_g": trainer.optimizer_g.state_dict(),
        "optimizer_d": trainer.optimizer_d.state_dict(),
        "scaler_g": trainer.update_g.scaler.state_dict(),
        "scaler_d": trainer.update_d.scaler.state_dict(),
        "rng": capture_rng_state(),
        "counters": {
            "step": trainer.step,
            "epoch": trainer.batches.epoch,
            "batch_in_epoch": trainer.batches.batch_in_epoch,
        },
        "health": trainer.health.state_dict(),
    }
    temporal = getattr(trainer, "temporal", None)
    if temporal is not None:
        weights["temporal_discriminator"] = temporal.discriminator.state_dict()
        state["optimizer_temporal"] = temporal.optimizer.state_dict()
        state["scaler_temporal"] = temporal.update.scaler.state_dict()
    return weights, state


def restore_trainer(trainer, loaded: Checkpoint) -> None:
    """Load weights, optimizer, scaler, RNG and data position into ``trainer``.

    Checkpoints written before loss scalers and health counters were stored lack
    those entries; the trainer then keeps its current ones. A temporal
    discriminator in a checkpoint is ignored by a trainer without one.

    Raises
    ------
    ValueError
        If ``trainer`` trains a temporal discriminator and the checkpoint has none.
    """
    trainer.generator.load_state_dict(loaded.weights["generator"])
    trainer.ema.load_state_dict(loaded.weights["ema"])
    trainer.discriminator.load_state_dict(loaded.weights["discriminator"])
    trainer.optimizer_g.load_state_dict(loaded.state["optimizer_g"])
    trainer.optimizer_d.load_state_dict(loaded.state["optimizer_d"])
    scalers = [("scaler_g", trainer.update_g), ("scaler_d", trainer.update_d)]
    temporal = getattr(trainer, "temporal", None)
    if temporal is not None:
        _restore_temporal(temporal, loaded)
        scalers.append(("scaler_temporal", temporal.update))
    elif "temporal_discriminator" in loaded.weights:
        log.warning(
            "checkpoint %s has a trained temporal discriminator, but this run has "
            "temporal_weight: 0, so it is not restored and later checkpoints will "
            "not contain it; resume with the temporal_weight of that run to keep it",
            loaded.path,
        )
    for key, update in scalers:
        # A disabled scaler saves an empty dict, which an enabled one rejects.
        if loaded.state.get(key):
            update.scaler.load_state_dict(loaded.state[key])
    if "health" in loaded.state:
        trainer.health.load_state_dict(loaded.state["health"])
    restore_rng_state(loaded.state["rng"])
    counters = loaded.state["counters"]
    trainer.step = int(counters["step"])
    trainer.batches.set_position(
        int(counters["epoch"]), int(counters["batch_in_epoch"])
    )
    trainer.last_scalars = loaded.meta.get("last_scalars", {})


def _restore_temporal(temporal, loaded: Checkpoint) -> None:
    if "temporal_discriminator" not in loaded.weights:
        raise ValueError(
            f"checkpoint {loaded.path} has no temporal discriminator, but this run "
            "has temporal_weight > 0; resume with temporal_weight: 0, or start the "
            "run in a new run directory"
        )
    temporal.discriminator.load_state_dict(loaded.weights["temporal_discriminator"])
    temporal.optimizer.load_state_dict(loaded.state["optimizer_temporal"])


def roll_back(trainer) -> bool:
    """Return ``trainer`` to its last checkpoint and lower both learning rates.

    Both learning rates in effect (and the temporal discriminator's, when the run
    has one) are multiplied by ``rollback_lr_factor``, so repeated rollbacks
    compound. Without a checkpoint only the learning rates
    change. The health counters restart, and the number of rollbacks is kept across
    the restore. Returns False, changing nothing, once ``max_rollbacks`` rollbacks
    were made.
    """
    options = trainer.options
    health = trainer.health
    if health.n_rollbacks >= options.max_rollbacks:
        log.warning(
            "step %d: training is unhealthy, but the max_rollbacks=%d rollbacks "
            "were already made; continuing",
            trainer.step,
            options.max_rollbacks,
        )
        return False
    updates = [trainer.update_g, trainer.update_d]
    if getattr(trainer, "temporal", None) is not None:
        updates.append(trainer.temporal.update)
    rates = [update.learning_rate for update in updates]
    from_step, n_rollbacks = trainer.step, health.n_rollbacks
    path = latest_checkpoint(trainer.run_dir / "checkpoints")
    if path is not None:
        restore_trainer(trainer, load_checkpoint(path))
    health.n_rollbacks = n_rollbacks + 1
    health.reset()
    for update, rate in zip(updates, rates, strict=True):
        update.set_learning_rate(rate * options.rollback_lr_factor)
    log.warning(
        "step %d: training is unhealthy; rolled back to step %d (%s) and lowered "
        "lr_generator to %.3g and lr_discriminator to %.3g (rollback %d of at most "
        "%d)",
        from_step,
        trainer.step,
        path or "no checkpoint, weights kept",
        trainer.update_g.learning_rate,
        trainer.update_d.learning_rate,
        health.n_rollbacks,
        options.max_rollbacks,
    )
    return True
