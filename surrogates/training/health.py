"""Health checks of adversarial training, reported with the step and the values.

Two failure modes are watched on the logging steps: a discriminator that separates
real from generated targets outright, which leaves the generator without a useful
gradient, and a generator whose samples no longer depend on its noise (ensemble
collapse). Non-finite losses and gradients are caught at every update by
:class:`~surrogates.training.updates.NetworkUpdate` instead.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from surrogates.data.masking import select_valid

log = logging.getLogger(__name__)

# Mean real logit minus mean fake logit at which each loss treats the two as fully
# separated. Critic values of a Wasserstein GAN have no absolute scale, so that loss
# has no default and its check runs only with an explicit health_logit_margin.
DEFAULT_LOGIT_MARGINS: dict[str, float | None] = {
    "hinge": 2.0,  # real >= 1 and fake <= -1 give a zero hinge loss
    "least_squares": 1.0,  # real = 1 and fake = 0 give a zero loss
    "non_saturating": 9.2,  # sigmoid(4.6) = 0.99 on both sides
    "wgan": None,
}
BATCH_KEYS = ("inputs", "conditions", "targets")


def fixed_batch(dataset: Dataset, n_samples: int) -> dict[str, Tensor]:
    """Stack up to ``n_samples`` samples spread evenly over ``dataset``.

    The data source's file handles are closed afterwards, so that none is open in
    the parent process when loader workers start.
    """
    count = min(n_samples, len(dataset))
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int))
    samples = [dataset[int(i)] for i in indices]
    source = getattr(dataset, "source", None)
    if source is not None:
        source.close()
    return {key: torch.stack([s[key] for s in samples]) for key in BATCH_KEYS}


@torch.no_grad()
def draw_samples(
    generator: nn.Module,
    inputs: Tensor,
    conditions: Tensor,
    *,
    n_draws: int,
    seed: int,
) -> Tensor:
    """Draw ``n_draws`` samples `(n_draws, B, C, H, W)` in evaluation mode.

    The noise comes from a forked random state seeded with ``seed``, so every call
    uses the same noise and the global random streams are left as they were.
    """
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    was_training = generator.training
    generator.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            draws = [generator(inputs, conditions).float() for _ in range(n_draws)]
    finally:
        generator.train(was_training)
    return torch.stack(draws)


def ensemble_spread(
    samples: Tensor, targets: Tensor, mask: Tensor | None = None
) -> float:
    """Return the spread of ``samples`` relative to the variability of ``targets``.

    The spread is the standard deviation over the draws of `(n_draws, B, C, H, W)`
    samples, averaged over every grid point (the valid points of a boolean
    ``(H, W)`` ``mask``), divided by the standard deviation of all target values
    `(B, C, H, W)` there. It is 0 for a generator that ignores its noise.
    """
    samples, targets = select_valid(samples, mask), select_valid(targets, mask)
    spread = samples.std(dim=0).mean()
    reference = targets.float().std().clamp_min(1e-12)
    return float(spread / reference)


DISCRIMINATOR_SCALARS = (
    ("discriminator", "train/"),
    ("temporal discriminator", "train/temporal_"),
)
"""Name and scalar prefix of each discriminator that the win check watches."""


class HealthMonitor:
    """Check the discriminator margin and the ensemble spread on logging steps.

    Each condition is reported with a WARNING once it has held for
    ``health_patience`` consecutive checks, and its count then starts again, so a
    lasting condition is reported once per ``health_patience`` checks.

    Parameters
    ----------
    options
        :class:`~surrogates.training.options.TrainingOptions`.
    batch
        The fixed validation batch: ``inputs``, ``conditions``, ``targets``, on the
        training device.
    mask
        Boolean ``(H, W)``, True at valid points; the spread counts only those.
    """

    def __init__(
        self, options, batch: dict[str, Tensor], mask: Tensor | None = None
    ) -> None:
        self.batch = batch
        self.mask = mask
        self.patience = options.health_patience
        self.warmup_steps = options.health_warmup_steps
        self.min_spread = options.health_min_spread
        self.n_draws = options.health_n_draws
        self.seed = options.seed
        self.logit_margin = options.health_logit_margin
        if self.logit_margin is None:
            self.logit_margin = DEFAULT_LOGIT_MARGINS[options.adversarial_loss]
        # A loss that rewards spread only through the discriminator or the CRPS;
        # the L1-only baseline is expected to ignore its noise.
        self.check_spread = options.adversarial_weight > 0 or options.crps_weight > 0
        self.n_rollbacks = 0
        self.reset()

    def reset(self) -> None:
        """Forget the consecutive counts, as after a rollback."""
        self.n_wins = {name: 0 for name, _ in DISCRIMINATOR_SCALARS}
        self.n_collapsed = 0

    def check(self, step: int, scalars: dict[str, float], generator: nn.Module) -> bool:
        """Add ``train/ensemble_spread`` to ``scalars`` and check both conditions.

        Returns True when a condition was reported at this check.
        """
        samples = draw_samples(
            generator,
            self.batch["inputs"],
            self.batch["conditions"],
            n_draws=self.n_draws,
            seed=self.seed,
        )
        spread = ensemble_spread(samples, self.batch["targets"], self.mask)
        scalars["train/ensemble_spread"] = spread
        if step < self.warmup_steps:
            return False
        wins = self._check_discriminator(step, scalars)
        collapsed = self.check_spread and self._check_spread(step, spread)
        return wins or collapsed

    def _check_discriminator(self, step: int, scalars: dict[str, float]) -> bool:
        # The one-step discriminator, and the temporal one when it is trained.
        reported = False
        for name, prefix in DISCRIMINATOR_SCALARS:
            if self.logit_margin is None or f"{prefix}logits_real" not in scalars:
                continue
            real = scalars[f"{prefix}logits_real"]
            fake = scalars[f"{prefix}logits_fake"]
            margin = real - fake
            wins = self.n_wins[name] + 1 if margin > self.logit_margin else 0
            self.n_wins[name] = wins
            if wins < self.patience:
                continue
            log.warning(
                "step %d: the %s wins outright: mean real logit %.4g minus mean "
                "fake logit %.4g is %.4g > health_logit_margin=%.4g for %d "
                "consecutive checks; lower its learning rate, raise its weight in "
                "the generator loss or add r1_weight",
                step,
                name,
                real,
                fake,
                margin,
                self.logit_margin,
                wins,
            )
            self.n_wins[name] = 0
            reported = True
        return reported

    def _check_spread(self, step: int, spread: float) -> bool:
        self.n_collapsed = self.n_collapsed + 1 if spread < self.min_spread else 0
        if self.n_collapsed < self.patience:
            return False
        log.warning(
            "step %d: the ensemble collapsed: spread over %d noise draws is %.4g of "
            "the targets' standard deviation, below health_min_spread=%.4g for %d "
            "consecutive checks; the generator ignores its noise (raise crps_weight "
            "or adversarial_weight, or check noise_channels > 0)",
            step,
            self.n_draws,
            spread,
            self.min_spread,
            self.n_collapsed,
        )
        self.n_collapsed = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        """Return the counters, for checkpoints."""
        return {
            "n_discriminator_wins": self.n_wins["discriminator"],
            "n_temporal_discriminator_wins": self.n_wins["temporal discriminator"],
            "n_collapsed": self.n_collapsed,
            "n_rollbacks": self.n_rollbacks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`state_dict`."""
        self.n_wins["discriminator"] = int(state["n_discriminator_wins"])
        self.n_wins["temporal discriminator"] = int(
            state.get("n_temporal_discriminator_wins", 0)
        )
        self.n_collapsed = int(state["n_collapsed"])
        self.n_rollbacks = int(state["n_rollbacks"])
