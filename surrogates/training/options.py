"""Training options as a plain dataclass, filled from a config by the scripts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass
class TrainingOptions:
    """Everything that controls one training run.

    Losses: the generator minimizes ``adversarial_weight * adversarial +
    reconstruction_weight * reconstruction + crps_weight * ensemble CRPS``. With
    ``adversarial_weight = 0`` the discriminator is never trained and the run is the
    deterministic U-Net baseline (when ``crps_weight = 0`` too).
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

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
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
