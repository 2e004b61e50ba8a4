"""Adversarial and reconstruction losses.

Discriminator outputs are raw logits of any shape; each loss averages over all of
them. ``generator_loss`` sees only the logits of generated samples. The gradient
penalties that regularize the discriminator are in :mod:`surrogates.training.penalties`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from surrogates.data.masking import select_valid


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss, ``E[relu(1 - D(real))] + E[relu(1 + D(fake))]``."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge loss, ``-E[D(fake)]``."""
    return -fake.mean()


def non_saturating_discriminator_loss(
    real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy on logits, ``E[softplus(-D(real))] + E[softplus(D(fake))]``."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def non_saturating_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss, ``E[softplus(-D(fake))]``."""
    return F.softplus(-fake).mean()


def least_squares_discriminator_loss(
    real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Least-squares GAN loss with targets 1 (real) and 0 (fake)."""
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def least_squares_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares generator loss with target 1."""
    return 0.5 * ((fake - 1.0) ** 2).mean()


def wasserstein_discriminator_loss(
    real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Critic side of the Wasserstein GAN loss, ``E[D(fake)] - E[D(real)]``.

    Meaningful only with a Lipschitz constraint on the critic, such as the gradient
    penalty of :func:`~surrogates.training.penalties.gradient_penalty`.
    """
    return fake.mean() - real.mean()


def wasserstein_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the Wasserstein GAN loss, ``-E[D(fake)]``."""
    return -fake.mean()


ADVERSARIAL_LOSSES = {
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "non_saturating": (
        non_saturating_discriminator_loss,
        non_saturating_generator_loss,
    ),
    "least_squares": (least_squares_discriminator_loss, least_squares_generator_loss),
    "wgan": (wasserstein_discriminator_loss, wasserstein_generator_loss),
}


def adversarial_losses(name: str):
    """Return ``(discriminator_loss, generator_loss)`` functions for a loss name.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`ADVERSARIAL_LOSSES`.
    """
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(
            f"adversarial_loss={name!r} is not supported; expected one of "
            f"{sorted(ADVERSARIAL_LOSSES)}"
        )
    return ADVERSARIAL_LOSSES[name]


def reconstruction_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    kind: str = "l1",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean absolute (``"l1"``) or squared (``"l2"``) error over the valid points."""
    error = select_valid(prediction, mask) - select_valid(target, mask)
    if kind == "l1":
        return error.abs().mean()
    if kind == "l2":
        return (error**2).mean()
    raise ValueError(f"reconstruction_loss={kind!r} is not supported; use 'l1' or 'l2'")


def ensemble_crps_loss(
    samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Fair CRPS of an ensemble, averaged over every valid grid point.

    Parameters
    ----------
    samples
        ``(M, B, C, H, W)`` with ``M >= 2`` generator samples for the same inputs.
    target
        ``(B, C, H, W)``.
    mask
        Boolean ``(H, W)``, True at the points that count; None for all points.

    Notes
    -----
    The fair estimator ``E|X - y| - E|X - X'| / 2`` with the second mean over the
    ``M (M - 1)`` ordered pairs of distinct members is unbiased for the CRPS of the
    generator's distribution (Ferro 2014, Q. J. R. Meteorol. Soc. 140). Minimizing it
    rewards members that spread as far as the error, unlike L1 on a single sample,
    which rewards the median and lets the generator ignore its noise.
    """
    n_members = samples.shape[0]
    if n_members < 2:
        raise ValueError(f"ensemble CRPS needs at least 2 samples, got {n_members}")
    samples, target = select_valid(samples, mask), select_valid(target, mask)
    skill = (samples - target.unsqueeze(0)).abs().mean()
    pair_sum = (samples.unsqueeze(0) - samples.unsqueeze(1)).abs().sum(dim=(0, 1))
    spread = pair_sum.mean() / (n_members * (n_members - 1))
    return skill - 0.5 * spread
