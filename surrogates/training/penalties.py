"""Gradient penalties on the discriminator: WGAN-GP and R1.

Both penalties differentiate the critic value of each sample with respect to the
target field and keep that derivative in the graph (``create_graph=True``), so the
penalty's own gradient reaches the discriminator's parameters. The critic value of a
sample is the mean of its patch logits, which is the quantity the adversarial losses
average.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

# Added under the square root of the squared gradient norm, so that the norm has a
# finite derivative where the gradient is exactly zero.
NORM_EPS = 1e-12


def critic_gradients(
    discriminator: nn.Module,
    inputs: Tensor,
    conditions: Tensor | None,
    target: Tensor,
    *,
    loss_scale: float = 1.0,
    autocast: Callable[[], Any] | None = None,
) -> Tensor:
    """Differentiate each sample's critic value with respect to its target.

    Parameters
    ----------
    discriminator
        Called as ``discriminator(inputs, conditions, target)``; returns patch
        logits `(B, 1, h, w)` or any `(B, ...)` shape.
    inputs, conditions
        Input fields `(B, C_in, H, W)` and conditions `(B, n_conditions)`.
    target
        Real, generated or interpolated fields `(B, C_out, H, W)`; detached here.
    loss_scale
        Factor of a ``torch.amp.GradScaler``. The critic values are multiplied by
        it before differentiation, so that float16 gradients do not underflow, and
        the gradients are divided by it afterwards.
    autocast
        Returns the autocast context for the discriminator's forward pass.

    Returns
    -------
    Tensor
        Unscaled gradients `(B, C_out, H, W)` in float32, part of the graph. Zeros
        when the critic does not depend on ``target``.
    """
    target = target.detach().requires_grad_(True)
    context = autocast() if autocast is not None else contextlib.nullcontext()
    with context:
        logits = discriminator(inputs, conditions, target)
    critic = logits.float().flatten(1).mean(dim=1)
    (gradients,) = torch.autograd.grad(
        critic.sum() * loss_scale,
        target,
        create_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )
    return gradients.float() / loss_scale


def gradient_penalty(
    discriminator: nn.Module,
    inputs: Tensor,
    conditions: Tensor | None,
    real: Tensor,
    fake: Tensor,
    **kwargs: Any,
) -> Tensor:
    """Return the WGAN-GP penalty ``E[(||grad D(x_mix)|| - 1)^2]``.

    ``x_mix`` mixes ``real`` and ``fake`` `(B, C, H, W)` with one uniform weight per
    sample, drawn from the global torch generator. The norm is computed as
    ``sqrt(sum(g**2) + NORM_EPS)``, which stays differentiable at ``g = 0``.
    Keyword arguments go to :func:`critic_gradients`.
    """
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    weight = torch.rand(shape, device=real.device, dtype=real.dtype)
    mixed = weight * real.detach() + (1.0 - weight) * fake.detach()
    gradients = critic_gradients(discriminator, inputs, conditions, mixed, **kwargs)
    norm = torch.sqrt(gradients.flatten(1).pow(2).sum(dim=1) + NORM_EPS)
    return ((norm - 1.0) ** 2).mean()


def r1_penalty(
    discriminator: nn.Module,
    inputs: Tensor,
    conditions: Tensor | None,
    real: Tensor,
    **kwargs: Any,
) -> Tensor:
    """Return the R1 penalty ``E[||grad D(real)||^2] / 2`` on real targets.

    The factor 1/2 follows Mescheder et al. (2018, "Which training methods for GANs
    do actually converge?"), so ``r1_weight`` plays the role of their gamma.
    Keyword arguments go to :func:`critic_gradients`.
    """
    gradients = critic_gradients(discriminator, inputs, conditions, real, **kwargs)
    return 0.5 * gradients.flatten(1).pow(2).sum(dim=1).mean()


class DiscriminatorPenalties:
    """The gradient penalties one training run adds to ``loss_d``.

    The WGAN-GP term (weight ``gradient_penalty_weight``) is active only with
    ``adversarial_loss="wgan"``. The R1 term (weight ``r1_weight``) is lazy: it is
    computed only on steps divisible by ``r1_interval``, with its weight multiplied
    by ``r1_interval`` so that its average strength does not depend on the interval.
    """

    def __init__(self, options) -> None:
        wgan = options.adversarial_loss == "wgan"
        self.gradient_penalty_weight = options.gradient_penalty_weight if wgan else 0.0
        self.r1_weight = options.r1_weight
        self.r1_interval = options.r1_interval

    def __call__(
        self,
        discriminator: nn.Module,
        inputs: Tensor,
        conditions: Tensor | None,
        real: Tensor,
        fake: Tensor,
        *,
        step: int,
        **kwargs: Any,
    ) -> tuple[Tensor, dict[str, float]]:
        """Return the weighted sum of the active penalties and their values.

        ``step`` is the number of completed training steps; keyword arguments go to
        :func:`critic_gradients`.
        """
        total = real.new_zeros((), dtype=torch.float32)
        scalars: dict[str, float] = {}
        if self.gradient_penalty_weight > 0:
            penalty = gradient_penalty(
                discriminator, inputs, conditions, real, fake, **kwargs
            )
            total = total + self.gradient_penalty_weight * penalty
            scalars["train/gradient_penalty"] = penalty.item()
        if self.r1_weight > 0 and step % self.r1_interval == 0:
            penalty = r1_penalty(discriminator, inputs, conditions, real, **kwargs)
            total = total + self.r1_weight * self.r1_interval * penalty
            scalars["train/r1_penalty"] = penalty.item()
        return total, scalars
