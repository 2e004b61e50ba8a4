"""Spectral, divergence and mean-conservation terms against analytic fields."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates.training import TrainingOptions
from surrogates.training.physics import (
    PhysicsTerms,
    divergence_penalty,
    mean_conservation_penalty,
    spectral_divergence,
    spectral_loss,
)

N = 16


def periodic_grid(n: int = N, length: float = 2 * math.pi):
    """Coordinates ``(y, x)`` of shape `(n, n)` on ``[0, length)^2``, H = y."""
    axis = torch.arange(n, dtype=torch.float64) * length / n
    return torch.meshgrid(axis, axis, indexing="ij")


def test_stream_function_field_is_divergence_free():
    y, x = periodic_grid()
    # psi = sin(x) cos(2y); u_x = d psi / dy, u_y = -d psi / dx
    u_x = -2 * torch.sin(x) * torch.sin(2 * y)
    u_y = -torch.cos(x) * torch.cos(2 * y)
    fields = torch.stack([u_x, u_y])[None].float()
    spacing = (2 * math.pi / N,) * 2
    penalty = divergence_penalty(fields, [0, 1], spacing=spacing)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_field_divergence_is_laplacian():
    y, x = periodic_grid()
    # phi = sin(x) cos(2y); div grad phi = -5 phi, and mean(phi^2) = 1/4
    u_x = torch.cos(x) * torch.cos(2 * y)
    u_y = -2 * torch.sin(x) * torch.sin(2 * y)
    fields = torch.stack([u_x, u_y])[None].float()
    spacing = (2 * math.pi / N,) * 2
    divergence = spectral_divergence(fields, spacing)
    expected = -5 * torch.sin(x) * torch.cos(2 * y)
    torch.testing.assert_close(divergence[0].double(), expected, rtol=0, atol=1e-5)
    penalty = divergence_penalty(fields, [0, 1], spacing=spacing)
    assert penalty.item() == pytest.approx(25 / 4, rel=1e-5)


def test_divergence_uses_channel_order_and_scales():
    y, x = periodic_grid()
    u_x = torch.cos(x) * torch.cos(2 * y)
    u_y = -2 * torch.sin(x) * torch.sin(2 * y)
    # stored as (u_y, scalar, u_x), with u_x normalized by a standard deviation of 2
    fields = torch.stack([u_y, torch.ones_like(x), u_x / 2])[None].float()
    spacing = (2 * math.pi / N,) * 2
    penalty = divergence_penalty(fields, [2, 0], spacing=spacing, scales=[2.0, 1.0])
    assert penalty.item() == pytest.approx(25 / 4, rel=1e-5)


def test_divergence_scales_with_grid_spacing():
    y, x = periodic_grid()
    u_x = torch.cos(x) * torch.cos(2 * y)
    u_y = -2 * torch.sin(x) * torch.sin(2 * y)
    fields = torch.stack([u_x, u_y])[None].float()
    # the same samples on a domain of length 1 instead of 2 pi: derivatives grow
    # by 2 pi, the squared divergence by (2 pi)^2
    penalty = divergence_penalty(fields, [0, 1], spacing=(1 / N, 1 / N))
    assert penalty.item() == pytest.approx(25 / 4 * (2 * math.pi) ** 2, rel=1e-5)


def test_equal_spectra_give_zero_spectral_loss():
    fields = torch.randn(2, 3, N, N)
    assert spectral_loss(fields, fields.clone()).item() == 0.0


def test_rolled_field_spectral_loss_zero():
    fields = torch.randn(2, 1, N, N, dtype=torch.float64)
    rolled = torch.roll(fields, shifts=(3, -5), dims=(-2, -1))
    assert spectral_loss(rolled, fields).item() == pytest.approx(0.0, abs=1e-6)
    assert (rolled - fields).abs().mean().item() > 0.1


def test_spectral_loss_detects_missing_small_scales():
    y, x = periodic_grid()
    smooth = torch.sin(x)[None, None].float()
    rough = (torch.sin(x) + 0.1 * torch.sin(6 * y))[None, None].float()
    assert spectral_loss(smooth, rough).item() > 0


def test_spectral_loss_gradient_finite_at_zero_modes():
    # a single Fourier mode: every other amplitude is exactly zero
    y, x = periodic_grid()
    prediction = torch.sin(x)[None, None].float().requires_grad_(True)
    target = torch.cos(2 * y)[None, None].float()
    spectral_loss(prediction, target).backward()
    assert torch.isfinite(prediction.grad).all()


def test_mean_conservation_penalty_of_offset():
    state = torch.randn(2, 2, N, N)
    offset = torch.tensor([0.5, 0.0])[None, :, None, None]
    prediction = state + offset + 0.1 * torch.randn(2, 2, N, N)
    prediction = prediction - prediction.mean(dim=(-2, -1), keepdim=True)
    prediction = prediction + state.mean(dim=(-2, -1), keepdim=True) + offset
    penalty_all = mean_conservation_penalty(prediction, state)
    penalty_first = mean_conservation_penalty(prediction, state, [0])
    penalty_second = mean_conservation_penalty(prediction, state, [1])
    assert penalty_all.item() == pytest.approx(0.25 / 2, rel=1e-5)
    assert penalty_first.item() == pytest.approx(0.25, rel=1e-5)
    assert penalty_second.item() == pytest.approx(0.0, abs=1e-10)


def test_physics_terms_weights_and_scalars():
    options = TrainingOptions(
        spectral_weight=2.0,
        mean_conservation_weight=3.0,
        divergence_weight=0.5,
        divergence_channels=[0, 1],
    )
    terms = PhysicsTerms(options, n_output_channels=2, residual=True)
    prediction, targets = torch.randn(2, 2, N, N), torch.randn(2, 2, N, N)
    inputs = torch.randn(2, 4, N, N)
    total, scalars = terms(prediction, targets, inputs)
    expected = (
        2.0 * spectral_loss(prediction, targets)
        + 3.0 * mean_conservation_penalty(prediction, inputs[:, 2:])
        + 0.5 * divergence_penalty(prediction, [0, 1])
    )
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=0)
    assert set(scalars) == {
        "train/loss_spectral",
        "train/loss_divergence",
        "train/loss_mean_conservation",
    }


def test_divergence_weight_without_channels_is_rejected():
    with pytest.raises(ValueError, match="divergence_channels"):
        TrainingOptions(divergence_weight=1.0)


def test_divergence_channel_out_of_range_is_rejected():
    options = TrainingOptions(divergence_weight=1.0, divergence_channels=[0, 2])
    with pytest.raises(ValueError, match=r"outside the 2 output channels"):
        PhysicsTerms(options, n_output_channels=2, residual=True)


def test_mean_conservation_needs_state_in_inputs():
    options = TrainingOptions(mean_conservation_weight=1.0)
    with pytest.raises(ValueError, match="input_fields"):
        PhysicsTerms(options, n_output_channels=1, residual=False)
