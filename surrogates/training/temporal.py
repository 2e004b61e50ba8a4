"""The temporal discriminator's updates and its term in the generator's loss."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from surrogates.training.penalties import DiscriminatorPenalties
from surrogates.training.precision import forward_function
from surrogates.training.unroll import history_states, rollout, split_window
from surrogates.training.updates import NetworkUpdate, discriminator_update

log = logging.getLogger(__name__)


def temporal_adversary(trainer, discriminator: nn.Module | None):
    """Return a :class:`TemporalAdversary` if ``temporal_weight > 0``, else None.

    Raises
    ------
    ValueError
        If ``temporal_weight > 0`` and ``discriminator`` is None.
    """
    weight = trainer.options.temporal_weight
    if weight == 0:
        if discriminator is not None:
            log.info("temporal_weight=0, so the temporal discriminator is unused")
        return None
    if discriminator is None:
        raise ValueError(
            f"temporal_weight={weight} needs a temporal discriminator; pass "
            "temporal_discriminator to the trainer, or set temporal_weight: 0"
        )
    return TemporalAdversary(trainer, discriminator, trainer.n_steps_input)


class TemporalAdversary:
    """The temporal discriminator with its optimizer, penalties and loss terms.

    The discriminator judges the last ``temporal_window`` states of ``[input
    states, future states]``: the targets for a real window, and the generator's
    rollout over ``unroll_steps`` steps from the same inputs for a generated one.
    Its loss is the run's adversarial loss plus the same penalties as the one-step
    discriminator, and its updates stop the run with
    :class:`~surrogates.training.updates.NonFiniteLossError` on a non-finite loss
    or gradient, under the name ``loss_d_temporal``.

    Parameters
    ----------
    trainer
        The :class:`~surrogates.training.Trainer` whose generator, precision and
        adversarial losses are used.
    discriminator
        Called as ``discriminator(context (B, n_context, C, H, W), conditions,
        states (B, window - n_context, C, H, W))``; a
        :class:`~surrogates.models.TemporalDiscriminator`.
    n_steps_input
        Input states per sample.
    """

    def __init__(self, trainer, discriminator: nn.Module, n_steps_input: int) -> None:
        options = trainer.options
        self.trainer = trainer
        self.discriminator = discriminator.to(trainer.device)
        self.n_steps_input = n_steps_input
        self.run = forward_function(
            self.discriminator, "temporal discriminator", options.compile
        )
        rate = options.lr_temporal_discriminator or options.lr_discriminator
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=rate, betas=options.betas
        )
        self.update = NetworkUpdate(
            "loss_d_temporal",
            self.discriminator,
            self.optimizer,
            trainer.precision.grad_scaler(),
            options.grad_clip_norm,
        )
        self.penalties = DiscriminatorPenalties(options)

    def _judge(self, context: Tensor, conditions: Tensor, states: Tensor) -> Tensor:
        with self.trainer.precision.autocast():
            return self.run(context, conditions, states).float()

    def discriminator_step(
        self, inputs: Tensor, conditions: Tensor, targets: Tensor
    ) -> dict[str, float]:
        """Update the discriminator once on real and generated windows.

        ``targets`` is `(B, n_steps, C, H, W)`, and the generated window comes from
        an ``n_steps`` rollout from ``inputs`` without gradients.
        """
        trainer = self.trainer
        window = trainer.options.temporal_window

        # real and generated windows with the same context
        with torch.no_grad():
            fakes = rollout(trainer, inputs, conditions, targets.shape[1])
        history = history_states(inputs, self.n_steps_input)
        context, real = split_window(history, targets, window)
        _, fake = split_window(history, fakes, window)

        return discriminator_update(
            self._judge,
            self.update,
            trainer.loss_d_fn,
            self.penalties,
            (context, conditions, real, fake),
            step=trainer.step,
            autocast=trainer.precision.autocast,
            prefix="train/temporal_",
        )

    def generator_loss(
        self, history: Tensor, conditions: Tensor, fakes: Tensor
    ) -> Tensor:
        """Return the generator's adversarial loss on windows ending with ``fakes``.

        ``history`` is `(B, n_steps_input, C, H, W)` and ``fakes`` the rollout
        `(B, n_steps, C, H, W)` from it, part of the generator's graph.
        """
        context, fake = split_window(
            history, fakes, self.trainer.options.temporal_window
        )
        return self.trainer.loss_g_fn(self._judge(context, conditions, fake))
