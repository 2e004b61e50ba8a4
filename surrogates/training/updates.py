"""One network's optimizer update: finiteness checks, loss scaling and clipping."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN or inf."""


class NetworkUpdate:
    """Backward pass, gradient clipping and optimizer step of one network.

    Without loss scaling, a non-finite loss or gradient norm raises
    :class:`NonFiniteLossError` at once. With an enabled ``torch.amp.GradScaler``
    (float16), overflowing gradients are expected now and then: the scaler skips
    that step and lowers its scale, and the error is raised only after
    ``max_skipped_steps`` consecutive skipped steps.

    Parameters
    ----------
    name
        The loss name used in messages, ``"loss_d"`` or ``"loss_g"``.
    model
        The network whose parameters ``optimizer`` updates.
    optimizer
        Its optimizer.
    scaler
        The loss scaler; a disabled one for float32 and bfloat16.
    grad_clip_norm
        Maximum total gradient norm, or None for no clipping.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        grad_clip_norm: float | None = None,
        max_skipped_steps: int = 10,
    ) -> None:
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.max_norm = grad_clip_norm or math.inf
        self.max_skipped_steps = max_skipped_steps
        self.n_skipped = 0

    def loss_scale(self) -> float:
        """Return the factor the loss is multiplied by before backward (1 if off)."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    @property
    def learning_rate(self) -> float:
        """Learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def set_learning_rate(self, value: float) -> None:
        """Set the learning rate of every parameter group."""
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def apply(self, loss: torch.Tensor, step: int) -> None:
        """Backpropagate ``loss`` and step the optimizer.

        Raises
        ------
        NonFiniteLossError
            If the loss or the gradient norm is NaN or inf (without loss scaling),
            or stays so for ``max_skipped_steps`` steps (with loss scaling).
        """
        scaling = self.scaler.is_enabled()
        if not scaling and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{self.name} is {loss.item()} at step {step}; lower the learning "
                "rate or the adversarial weight, or check the data for outliers"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm)
        if not scaling:
            if not torch.isfinite(norm):
                raise NonFiniteLossError(
                    f"gradient norm of {self.name} is {norm.item()} at step {step}; "
                    "lower the learning rate or set grad_clip_norm"
                )
            self.optimizer.step()
            return
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._count_skipped(self.scaler.get_scale() < scale, loss, step)

    def _count_skipped(self, skipped: bool, loss: torch.Tensor, step: int) -> None:
        self.n_skipped = self.n_skipped + 1 if skipped else 0
        if skipped:
            log.debug("step %d: %s step skipped by the loss scaler", step, self.name)
        if self.n_skipped >= self.max_skipped_steps:
            raise NonFiniteLossError(
                f"{self.name} or its gradients were non-finite at "
                f"{self.n_skipped} consecutive steps up to step {step} (last "
                f"{self.name} {loss.item()}, loss scale now "
                f"{self.scaler.get_scale()}); lower the learning rate, or train with "
                "precision='bf16' or 'fp32'"
            )


def discriminator_update(
    judge,
    update: NetworkUpdate,
    loss_fn,
    penalties,
    batch: tuple[torch.Tensor, ...],
    *,
    step: int,
    autocast,
    prefix: str = "train/",
) -> dict[str, float]:
    """Update a discriminator once on a real and a generated batch.

    Parameters
    ----------
    judge
        Maps ``(inputs, conditions, states)`` to float32 logits.
    update
        The discriminator's :class:`NetworkUpdate`; its model gets the penalties.
    loss_fn
        The adversarial loss of ``(logits_real, logits_fake)``.
    penalties
        A :class:`~surrogates.training.penalties.DiscriminatorPenalties`.
    batch
        ``(inputs, conditions, real, fake)`` as ``judge`` takes them.
    step
        The training step, for messages and lazy penalties.
    autocast
        The run's autocast context factory.
    prefix
        Prefix of the returned scalar names, e.g. ``"train/temporal_"``.

    Returns
    -------
    dict
        ``<prefix>logits_real``, ``<prefix>logits_fake`` and the penalties'
        scalars; the loss itself under ``train/<update.name>``.
    """
    inputs, conditions, real, fake = batch
    logits_real = judge(inputs, conditions, real)
    logits_fake = judge(inputs, conditions, fake)
    loss_d = loss_fn(logits_real, logits_fake)
    penalty, penalty_scalars = penalties(
        update.model,
        inputs,
        conditions,
        real,
        fake,
        step=step,
        loss_scale=update.loss_scale(),
        autocast=autocast,
    )
    update.apply(loss_d + penalty, step)
    scalars = {
        key.replace("train/", prefix, 1): value
        for key, value in penalty_scalars.items()
    }
    scalars[f"train/{update.name}"] = loss_d.item()
    scalars[f"{prefix}logits_real"] = logits_real.mean().item()
    scalars[f"{prefix}logits_fake"] = logits_fake.mean().item()
    return scalars
