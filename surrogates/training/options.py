"""Training options as a plain dataclass, filled from a config by the scripts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from surrogates.training.losses import ADVERSARIAL_LOSSES

PRECISION_NAMES = ("fp32", "bf16", "fp16")


@dataclasses.dataclass
class TrainingOptions:
    """Everything that controls one training run.

    Losses: the generator minimizes ``adversarial_weight * adversarial +
    reconstruction_weight * reconstruction + crps_weight * ensemble CRPS`` plus the
    weighted spectral, divergence and mean-conservation terms of
    :mod:`surrogates.training.physics`. With ``adversarial_weight = 0`` the
    discriminator is never trained and the run is the deterministic U-Net baseline
    (when ``crps_weight = 0`` too). The discriminator minimizes its adversarial loss
    plus ``gradient_penalty_weight`` times the WGAN-GP penalty (with
    ``adversarial_loss="wgan"`` only) and ``r1_weight`` times the R1 penalty,
    evaluated every ``r1_interval`` steps with its weight multiplied by the interval.

    Each step updates the discriminator ``n_discriminator_steps`` times, each time on
    a new batch, and then the generator once, on the last of those batches.

    Health checks run every ``log_every`` steps from step ``health_warmup_steps``
    on, because the generator's output layer starts at zero and so does its spread.
    The discriminator wins outright when its mean real logit exceeds its mean fake
    logit by ``health_logit_margin`` (None: the default of the adversarial loss).
    The ensemble collapses when the generator's spread over ``health_n_draws``
    noise draws on a fixed validation batch, divided by the targets' standard
    deviation, is below ``health_min_spread``. That check is skipped when neither
    the adversarial nor the CRPS term rewards spread. Either condition is reported
    after ``health_patience`` consecutive checks. With ``rollback_on_unhealthy``
    a report also makes the run return to its last checkpoint with both learning
    rates multiplied by ``rollback_lr_factor``, at most ``max_rollbacks`` times.

    ``precision`` is ``"fp32"``, ``"bf16"`` (autocast on CPU or CUDA) or ``"fp16"``
    (autocast with loss scaling, for CUDA; slow on CPUs). ``compile`` wraps both
    networks' forward passes with ``torch.compile`` and falls back to eager mode
    when compilation fails. ``image_every`` writes target-versus-sample images of the
    fixed validation batch every that many steps (0: never).

    Unrolled training (``unroll_steps > 1``) rolls the generator out that many
    steps, feeding each prediction back as the newest input state, and
    backpropagates through the whole rollout. The generator's reconstruction,
    CRPS, physics and one-step adversarial terms are then averaged over the steps
    with weights ``unroll_discount**k`` for step ``k = 0, 1, ...``. The temporal
    discriminator (``temporal_weight > 0``) judges windows of
    ``temporal_window`` consecutive states, the newest of them generated, and adds
    ``temporal_weight`` times its adversarial loss to the generator's loss. It is
    trained with the same adversarial loss and penalties as the one-step
    discriminator, at ``lr_temporal_discriminator`` (None: ``lr_discriminator``).
    Both need every input field to be an output field.
    """

    max_steps: int = 2000
    time_budget_s: float | None = None
    batch_size: int = 16
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    adversarial_loss: str = "hinge"
    adversarial_weight: float = 0.05
    reconstruction_loss: str = "l1"
    reconstruction_weight: float = 1.0
    crps_weight: float = 0.0
    n_ensemble_train: int = 2
    n_discriminator_steps: int = 1
    ema_decay: float = 0.995
    grad_clip_norm: float | None = None
    log_every: int = 25
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0
    seed: int = 0
    # discriminator penalties
    gradient_penalty_weight: float = 10.0
    r1_weight: float = 0.0
    r1_interval: int = 1
    # physics and spectral terms of the generator loss
    spectral_weight: float = 0.0
    divergence_weight: float = 0.0
    divergence_channels: list[int] | None = None
    mean_conservation_weight: float = 0.0
    conserved_channels: list[int] | None = None
    # health checks and rollback
    health_warmup_steps: int = 100
    health_patience: int = 5
    health_logit_margin: float | None = None
    health_min_spread: float = 1e-3
    health_n_draws: int = 3
    health_batch_size: int = 8
    rollback_on_unhealthy: bool = False
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3
    # speed and images
    precision: str = "fp32"
    compile: bool = False
    image_every: int = 0
    # unrolled training and temporal discriminator
    unroll_steps: int = 1
    unroll_discount: float = 1.0
    temporal_weight: float = 0.0
    temporal_window: int = 2
    lr_temporal_discriminator: float | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("divergence_channels", "conserved_channels"):
            value = getattr(self, name)
            setattr(self, name, None if value is None else [int(c) for c in value])
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"max_steps={self.max_steps} and batch_size={self.batch_size} must "
                "be positive"
            )
        if self.crps_weight > 0 and self.n_ensemble_train < 2:
            raise ValueError(
                f"crps_weight={self.crps_weight} needs n_ensemble_train >= 2, got "
                f"{self.n_ensemble_train}"
            )
        self._check_choices()
        self._check_minimums()
        if self.divergence_weight > 0 and (
            self.divergence_channels is None or len(self.divergence_channels) != 2
        ):
            raise ValueError(
                f"divergence_weight={self.divergence_weight} needs "
                f"divergence_channels=[i, j] naming the channels of u_x and u_y in "
                f"the (B, C, H, W) output, got {self.divergence_channels}"
            )
        if not 0.0 < self.rollback_lr_factor <= 1.0:
            raise ValueError(
                f"rollback_lr_factor={self.rollback_lr_factor} must be in (0, 1]"
            )
        self._check_unrolling()

    def _check_choices(self) -> None:
        choices = {
            "adversarial_loss": sorted(ADVERSARIAL_LOSSES),
            "reconstruction_loss": ("l1", "l2"),
            "precision": PRECISION_NAMES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not supported; expected one "
                    f"of {list(allowed)}"
                )

    def _check_minimums(self) -> None:
        minimums = {
            "n_discriminator_steps": 1,
            "log_every": 1,
            "checkpoint_every": 1,
            "r1_interval": 1,
            "health_patience": 1,
            "health_n_draws": 2,
            "health_batch_size": 1,
            "image_every": 0,
            "max_rollbacks": 0,
            "health_warmup_steps": 0,
            "gradient_penalty_weight": 0,
            "r1_weight": 0,
            "spectral_weight": 0,
            "divergence_weight": 0,
            "mean_conservation_weight": 0,
            "temporal_weight": 0,
        }
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ValueError(
                    f"{name}={getattr(self, name)} is invalid; expected a value "
                    f">= {minimum}"
                )

    def _check_unrolling(self) -> None:
        if int(self.unroll_steps) != self.unroll_steps or self.unroll_steps < 1:
            raise ValueError(
                f"unroll_steps={self.unroll_steps} is invalid; expected an integer "
                ">= 1 (1 trains on single steps)"
            )
        if not self.unroll_discount > 0:
            raise ValueError(
                f"unroll_discount={self.unroll_discount} is invalid; expected a "
                "positive weight ratio between consecutive unrolled steps (1: equal "
                "weights)"
            )
        if (
            int(self.temporal_window) != self.temporal_window
            or self.temporal_window < 2
        ):
            raise ValueError(
                f"temporal_window={self.temporal_window} is invalid; expected an "
                "integer >= 2 (consecutive states the temporal discriminator judges)"
            )
        rate = self.lr_temporal_discriminator
        if rate is not None and not rate > 0:
            raise ValueError(
                f"lr_temporal_discriminator={rate} is invalid; expected a positive "
                "learning rate, or null to use lr_discriminator"
            )

    @property
    def feeds_back(self) -> bool:
        """Whether training feeds the generator's outputs back as its inputs."""
        return self.unroll_steps > 1 or self.temporal_weight > 0

    @property
    def n_steps_output(self) -> int:
        """Future states each training sample needs: ``unroll_steps``."""
        return self.unroll_steps

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainingOptions:
        """Build from a mapping, rejecting unknown keys with the allowed ones listed."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(
                f"unknown training options {sorted(unknown)}; allowed are "
                f"{sorted(names)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as plain data."""
        return dataclasses.asdict(self)
