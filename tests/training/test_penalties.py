"""Gradient penalties: analytic values, zero gradients, loss scaling, lazy R1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from surrogates.training import TrainingOptions
from surrogates.training.penalties import (
    DiscriminatorPenalties,
    critic_gradients,
    gradient_penalty,
    r1_penalty,
)

SHAPE = (3, 2, 8, 8)


class LinearCritic(nn.Module):
    """Patch logits whose per-sample mean is ``<weight, target>``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, inputs, conditions, target):
        value = (target * self.weight).flatten(1).sum(dim=1)
        return value[:, None, None, None].expand(-1, 1, 2, 2)


class ConvCritic(nn.Module):
    """A convolution over the target whose weights can be zero."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(SHAPE[1], 1, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)

    def forward(self, inputs, conditions, target):
        return self.conv(target)


class ConstantCritic(nn.Module):
    """Logits that ignore the target altogether."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(0.3))

    def forward(self, inputs, conditions, target):
        return self.bias.expand(target.shape[0], 1, 2, 2)


def fields():
    return torch.randn(*SHAPE), torch.randn(*SHAPE), torch.randn(*SHAPE)


def test_gradient_penalty_of_linear_critic():
    weight = torch.full(SHAPE[1:], 2.0 / (SHAPE[1] * 64) ** 0.5)  # norm 2
    critic = LinearCritic(weight)
    inputs, real, fake = fields()
    penalty = gradient_penalty(critic, inputs, None, real, fake)
    assert penalty.item() == pytest.approx(1.0, rel=1e-5)


def test_r1_penalty_of_linear_critic():
    weight = torch.full(SHAPE[1:], 2.0 / (SHAPE[1] * 64) ** 0.5)
    critic = LinearCritic(weight)
    inputs, real, _ = fields()
    assert r1_penalty(critic, inputs, None, real).item() == pytest.approx(2.0, rel=1e-5)


def test_gradient_penalty_finite_at_zero_gradient():
    critic = ConvCritic()
    inputs, real, fake = fields()
    penalty = gradient_penalty(critic, inputs, None, real, fake)
    penalty.backward()
    assert penalty.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(critic.conv.weight.grad).all()


def test_plain_norm_fails_at_zero_gradient():
    # The case above matters: without the offset the weight gradient is NaN.
    critic = ConvCritic()
    inputs, real, _ = fields()
    gradients = critic_gradients(critic, inputs, None, real)
    norm = torch.sqrt(gradients.flatten(1).pow(2).sum(dim=1))
    ((norm - 1.0) ** 2).mean().backward()
    assert torch.isnan(critic.conv.weight.grad).any()


def test_gradient_penalty_of_constant_critic():
    critic = ConstantCritic()
    inputs, real, fake = fields()
    penalty = gradient_penalty(critic, inputs, None, real, fake)
    assert penalty.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(penalty)


def test_penalty_reaches_parameters():
    critic = LinearCritic(torch.randn(SHAPE[1:]))
    inputs, real, fake = fields()
    gradient_penalty(critic, inputs, None, real, fake).backward()
    assert critic.weight.grad.abs().sum() > 0


def test_loss_scale_is_undone():
    critic = LinearCritic(torch.randn(SHAPE[1:]))
    inputs, real, _ = fields()
    plain = critic_gradients(critic, inputs, None, real)
    scaled = critic_gradients(critic, inputs, None, real, loss_scale=2.0**16)
    torch.testing.assert_close(scaled, plain, rtol=1e-6, atol=0)


def test_gradient_penalty_only_with_wgan():
    hinge = DiscriminatorPenalties(TrainingOptions(adversarial_loss="hinge"))
    wgan = DiscriminatorPenalties(TrainingOptions(adversarial_loss="wgan"))
    assert hinge.gradient_penalty_weight == 0.0
    assert wgan.gradient_penalty_weight == 10.0


def test_lazy_r1_weight_and_interval():
    options = TrainingOptions(r1_weight=0.5, r1_interval=4)
    penalties = DiscriminatorPenalties(options)
    critic = LinearCritic(torch.randn(SHAPE[1:]))
    inputs, real, fake = fields()
    total, scalars = penalties(critic, inputs, None, real, fake, step=8)
    skipped, skipped_scalars = penalties(critic, inputs, None, real, fake, step=9)
    expected = 0.5 * 4 * r1_penalty(critic, inputs, None, real)
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=0)
    assert "train/r1_penalty" in scalars
    assert skipped.item() == 0.0
    assert skipped_scalars == {}
