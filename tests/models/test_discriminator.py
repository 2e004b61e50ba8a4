"""Tests of the conditional PatchGAN discriminator on tiny CPU grids."""

import pytest
import torch
from torch.nn.utils import parametrize

from surrogates.models import PatchDiscriminator


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


def make_batch(discriminator: PatchDiscriminator, size=(16, 16), batch_size=2):
    inputs = torch.randn(batch_size, discriminator.in_channels, *size)
    conditions = torch.randn(batch_size, discriminator.n_conditions)
    target = torch.randn(batch_size, discriminator.target_channels, *size)
    return inputs, conditions, target


def weight_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]


# shapes


@pytest.mark.parametrize(
    ("in_channels", "target_channels", "n_conditions"),
    [(1, 1, 0), (4, 1, 2), (2, 3, 1), (0, 2, 3), (6, 3, 0)],
)
def test_logit_shape(in_channels, target_channels, n_conditions):
    discriminator = PatchDiscriminator(
        in_channels, target_channels, n_conditions, base_channels=8
    )
    logits = discriminator(*make_batch(discriminator))
    assert logits.shape == (2, 1, 2, 2)


@pytest.mark.parametrize(
    ("size", "n_layers", "expected"),
    [((32, 32), 3, (4, 4)), ((20, 12), 3, (3, 2)), ((16, 16), 4, (1, 1))],
)
def test_logit_shape_rounds_up(size, n_layers, expected):
    discriminator = PatchDiscriminator(2, 1, 1, base_channels=8, n_layers=n_layers)
    logits = discriminator(*make_batch(discriminator, size=size))
    assert logits.shape == (2, 1, *expected)


def test_conditions_none_without_conditions():
    discriminator = PatchDiscriminator(2, 1, 0, base_channels=8)
    inputs, _, target = make_batch(discriminator)
    assert discriminator(inputs, None, target).shape == (2, 1, 2, 2)


@pytest.mark.parametrize(
    ("in_channels", "target_channels", "expected"), [(3, 2, 7), (1, 2, 3)]
)
def test_increment_channels(in_channels, target_channels, expected):
    discriminator = PatchDiscriminator(in_channels, target_channels, 0)
    first_conv = discriminator.features[0]
    assert first_conv.in_channels == expected


# periodicity


@pytest.mark.parametrize("shift", [(8, 16), (-8, 24)])
def test_periodic_translation_equivariance(shift):
    discriminator = PatchDiscriminator(3, 2, 2, base_channels=8).eval()
    inputs, conditions, target = make_batch(discriminator, size=(32, 32))
    dims = (2, 3)
    logits = discriminator(inputs, conditions, target)
    rolled = discriminator(
        torch.roll(inputs, shift, dims), conditions, torch.roll(target, shift, dims)
    )
    stride = discriminator.total_stride
    expected = torch.roll(logits, (shift[0] // stride, shift[1] // stride), dims)
    torch.testing.assert_close(rolled, expected, rtol=0.0, atol=1e-5)


# conditions


def test_conditions_change_logits():
    discriminator = PatchDiscriminator(3, 1, 2, base_channels=8).eval()
    inputs, conditions, target = make_batch(discriminator)
    logits = discriminator(inputs, conditions, target)
    other = discriminator(inputs, conditions + 0.5, target)
    assert (logits - other).abs().max() > 1e-4


def test_target_changes_logits():
    discriminator = PatchDiscriminator(3, 1, 2, base_channels=8).eval()
    inputs, conditions, target = make_batch(discriminator)
    logits = discriminator(inputs, conditions, target)
    other = discriminator(inputs, conditions, target + 0.1 * torch.randn_like(target))
    assert (logits - other).abs().max() > 1e-4


# spectral normalization


def test_every_weight_is_spectrally_normalized():
    discriminator = PatchDiscriminator(3, 1, 2, base_channels=8, n_layers=3)
    modules = weight_modules(discriminator)
    assert len(modules) == 3 + 2 + 2  # strided, top, logits convs and 2 linears
    for module in modules:
        assert parametrize.is_parametrized(module, "weight"), module


def test_no_batch_norm():
    discriminator = PatchDiscriminator(3, 1, 2)
    batch_norms = [
        m
        for m in discriminator.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert batch_norms == []


def test_spectral_norm_is_one_after_training_passes():
    discriminator = PatchDiscriminator(3, 1, 2, base_channels=8).train()
    for _ in range(5):
        discriminator(*make_batch(discriminator))
    for module in weight_modules(discriminator):
        matrix = module.weight.detach().reshape(module.weight.shape[0], -1)
        sigma = torch.linalg.matrix_norm(matrix, ord=2)
        torch.testing.assert_close(sigma, torch.tensor(1.0), rtol=0.1, atol=0.0)


# errors


def test_wrong_input_channels_raise():
    discriminator = PatchDiscriminator(4, 1, 2, base_channels=8)
    inputs, conditions, target = make_batch(discriminator)
    with pytest.raises(ValueError, match=r"inputs has shape \(2, 3, 16, 16\)"):
        discriminator(inputs[:, :3], conditions, target)


def test_wrong_target_channels_raise():
    discriminator = PatchDiscriminator(4, 1, 2, base_channels=8)
    inputs, conditions, _ = make_batch(discriminator)
    with pytest.raises(ValueError, match=r"target has shape \(2, 2, 16, 16\)"):
        discriminator(inputs, conditions, torch.randn(2, 2, 16, 16))


def test_mismatched_target_size_raises():
    discriminator = PatchDiscriminator(4, 1, 2, base_channels=8)
    inputs, conditions, _ = make_batch(discriminator)
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 32\)"):
        discriminator(inputs, conditions, torch.randn(2, 1, 16, 32))


def test_wrong_condition_count_raises():
    discriminator = PatchDiscriminator(4, 1, 2, base_channels=8)
    inputs, _, target = make_batch(discriminator)
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(2, 2\)"):
        discriminator(inputs, torch.randn(2, 3), target)


def test_too_small_grid_raises():
    discriminator = PatchDiscriminator(4, 1, 0, base_channels=8, n_layers=4)
    inputs, _, target = make_batch(discriminator, size=(8, 16))
    with pytest.raises(ValueError, match=r"\(8, 16\).*n_layers=4; use n_layers <= 3"):
        discriminator(inputs, None, target)


def test_invalid_n_layers_raises():
    with pytest.raises(ValueError, match="n_layers=0"):
        PatchDiscriminator(4, 1, 0, n_layers=0)


# training


def test_gradients_flow_to_all_parameters():
    discriminator = PatchDiscriminator(3, 2, 2, base_channels=8)
    logits = discriminator(*make_batch(discriminator))
    logits.mean().backward()
    for name, parameter in discriminator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_compiles_without_graph_breaks():
    discriminator = PatchDiscriminator(3, 1, 2, base_channels=8).eval()
    batch = make_batch(discriminator)
    compiled = torch.compile(discriminator, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(*batch), discriminator(*batch))
