"""Adversarial, reconstruction and ensemble losses: values and gradients."""

from __future__ import annotations

import pytest
import torch

from surrogates.training.losses import (
    ADVERSARIAL_LOSSES,
    adversarial_losses,
    ensemble_crps_loss,
    reconstruction_loss,
)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_LOSSES))
def test_adversarial_losses_finite_with_gradients(name):
    loss_d, loss_g = adversarial_losses(name)
    real = torch.randn(4, 1, 3, 3, requires_grad=True)
    fake = torch.randn(4, 1, 3, 3, requires_grad=True)
    value_d = loss_d(real, fake)
    grad_real, grad_fake_d = torch.autograd.grad(value_d, (real, fake))
    value_g = loss_g(fake)
    (grad_fake_g,) = torch.autograd.grad(value_g, fake)
    assert torch.isfinite(value_d)
    assert torch.isfinite(value_g)
    assert torch.isfinite(grad_real).all()
    assert grad_real.abs().sum() > 0
    assert grad_fake_d.abs().sum() > 0
    assert grad_fake_g.abs().sum() > 0


def test_hinge_values():
    loss_d, loss_g = adversarial_losses("hinge")
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.0])
    assert loss_d(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert loss_g(fake).item() == pytest.approx(1.0)


def test_unknown_adversarial_loss_lists_choices():
    with pytest.raises(ValueError, match="hinge"):
        adversarial_losses("wasserstein-ish")


def test_reconstruction_losses():
    prediction, target = torch.zeros(2, 3), torch.full((2, 3), 2.0)
    assert reconstruction_loss(prediction, target, "l1").item() == 2.0
    assert reconstruction_loss(prediction, target, "l2").item() == 4.0


def test_crps_of_point_ensemble_is_l1():
    target = torch.randn(2, 1, 4, 4)
    samples = torch.randn(1, 2, 1, 4, 4).expand(3, -1, -1, -1, -1)
    expected = (samples[0] - target).abs().mean()
    torch.testing.assert_close(ensemble_crps_loss(samples, target), expected)


def test_crps_matches_scoringrules():
    scoringrules = pytest.importorskip("scoringrules")
    samples = torch.randn(5, 3, 1, 2, 2, dtype=torch.float64)
    target = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    reference = scoringrules.crps_ensemble(
        target.numpy(), samples.numpy(), m_axis=0, estimator="fair"
    )
    assert ensemble_crps_loss(samples, target).item() == pytest.approx(
        float(reference.mean()), rel=1e-10
    )


def masked_pair():
    torch.manual_seed(0)
    prediction = torch.randn(2, 3, 6, 5, requires_grad=True)
    target = torch.randn(2, 3, 6, 5)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[1:3, 2:] = False
    target[..., ~mask] = float("nan")
    return prediction, target, mask


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_masked_reconstruction_selects_valid_points(kind):
    prediction, target, mask = masked_pair()
    loss = reconstruction_loss(prediction, target, kind, mask=mask)
    error = (prediction - target).permute(2, 3, 0, 1)[mask]
    expected = error.abs().mean() if kind == "l1" else (error**2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    loss.backward()
    assert torch.isfinite(prediction.grad).all()
    assert torch.equal(prediction.grad[..., ~mask], torch.zeros(2, 3, 6))


def test_masked_crps_ignores_nan_under_the_mask():
    prediction, target, mask = masked_pair()
    samples = torch.stack([prediction, prediction.detach() + 0.5])
    loss = ensemble_crps_loss(samples, target, mask=mask)
    valid = samples[..., mask], target[..., mask]
    expected = ensemble_crps_loss(valid[0][..., None], valid[1][..., None])
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    loss.backward()
    assert torch.isfinite(prediction.grad).all()
