"""Tests of the conditional U-Net generator on tiny CPU grids."""

import time

import pytest
import torch

from surrogates.models import UNetGenerator

SMALL = {"base_channels": 8, "norm_groups": 4}


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


def perturb_zero_parameters(model: torch.nn.Module, std: float = 0.1) -> None:
    """Redraw every all-zero parameter (output head, FiLM layers, norm biases)."""
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(std=std)


def make_batch(generator: UNetGenerator, size: int = 16, batch_size: int = 2):
    inputs = torch.randn(batch_size, generator.in_channels, size, size)
    conditions = torch.randn(batch_size, generator.n_conditions)
    noise = generator.sample_noise(inputs)
    return inputs, conditions, noise


# shapes


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "n_conditions", "noise_channels"),
    [(1, 1, 0, 4), (4, 1, 2, 4), (3, 2, 1, 0), (6, 3, 5, 2)],
)
def test_output_shape(in_channels, out_channels, n_conditions, noise_channels):
    generator = UNetGenerator(
        in_channels, out_channels, n_conditions, noise_channels=noise_channels, **SMALL
    )
    inputs = torch.randn(2, in_channels, 16, 32)
    conditions = torch.randn(2, n_conditions)
    output = generator(inputs, conditions)
    assert output.shape == (2, out_channels, 16, 32)


def test_output_shape_conditions_none():
    generator = UNetGenerator(2, 1, 0, **SMALL)
    inputs = torch.randn(2, 2, 16, 16)
    assert generator(inputs, None).shape == (2, 1, 16, 16)


def test_output_shape_four_levels():
    generator = UNetGenerator(2, 1, 1, channel_multipliers=(1, 2, 2, 4), **SMALL)
    inputs, conditions, noise = make_batch(generator, size=32)
    assert generator(inputs, conditions, noise).shape == (2, 1, 32, 32)


def test_generation_from_noise_only():
    generator = UNetGenerator(0, 2, 3, residual=False, **SMALL)
    perturb_zero_parameters(generator)
    inputs = torch.empty(2, 0, 16, 16)
    output = generator(inputs, torch.randn(2, 3))
    assert output.shape == (2, 2, 16, 16)
    assert output.std() > 0


def test_float64_noise_and_output():
    generator = UNetGenerator(2, 1, 1, **SMALL).double()
    inputs = torch.randn(2, 2, 16, 16, dtype=torch.float64)
    assert generator.sample_noise(inputs).dtype == torch.float64
    assert generator(inputs, torch.randn(2, 1, dtype=torch.float64)).dtype == (
        torch.float64
    )


# initialization


def test_residual_init_is_persistence():
    generator = UNetGenerator(5, 2, 3, **SMALL)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    torch.testing.assert_close(output, inputs[:, -2:], rtol=0.0, atol=0.0)


def test_non_residual_init_is_zero():
    generator = UNetGenerator(3, 2, 1, residual=False, **SMALL)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    torch.testing.assert_close(output, torch.zeros_like(output), rtol=0.0, atol=0.0)


def test_film_init_ignores_conditions():
    generator = UNetGenerator(3, 1, 2, **SMALL)
    with torch.no_grad():
        generator.head.weight.normal_(std=0.1)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    other = generator(inputs, conditions + 1.0, noise)
    torch.testing.assert_close(output, other, rtol=0.0, atol=0.0)


# periodicity


@pytest.mark.parametrize("shift", [(4, 8), (12, -4)])
def test_periodic_translation_equivariance(shift):
    generator = UNetGenerator(3, 2, 2, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    dims = (2, 3)
    output = generator(inputs, conditions, noise)
    rolled_inputs = torch.roll(inputs, shift, dims)
    rolled_noise = torch.roll(noise, shift, dims)
    output_of_rolled = generator(rolled_inputs, conditions, rolled_noise)
    expected = torch.roll(output, shift, dims)
    torch.testing.assert_close(output_of_rolled, expected, rtol=0.0, atol=1e-5)


def test_zero_padding_breaks_equivariance():
    generator = UNetGenerator(3, 2, 2, periodic=False, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    dims = (2, 3)
    output = generator(inputs, conditions, noise)
    output_of_rolled = generator(
        torch.roll(inputs, (4, 8), dims), conditions, torch.roll(noise, (4, 8), dims)
    )
    difference = (output_of_rolled - torch.roll(output, (4, 8), dims)).abs().max()
    assert difference > 1e-3


# conditions and noise


def test_conditions_change_output():
    generator = UNetGenerator(3, 1, 2, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    other = generator(inputs, conditions + 0.5, noise)
    assert (output - other).abs().max() > 1e-4


def test_noise_draws_change_output():
    generator = UNetGenerator(3, 1, 2, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, _ = make_batch(generator)
    first = generator(inputs, conditions)
    second = generator(inputs, conditions)
    assert (first - second).abs().max() > 1e-4


def test_identical_noise_gives_identical_output():
    generator = UNetGenerator(3, 1, 2, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    first = generator(inputs, conditions, noise)
    second = generator(inputs, conditions, noise.clone())
    torch.testing.assert_close(first, second, rtol=0.0, atol=0.0)


def test_sample_noise_seeded_generator():
    generator = UNetGenerator(3, 1, 0, noise_channels=3, **SMALL)
    inputs = torch.randn(2, 3, 16, 16)
    first = generator.sample_noise(inputs, torch.Generator().manual_seed(7))
    second = generator.sample_noise(inputs, torch.Generator().manual_seed(7))
    assert first.shape == (2, 3, 16, 16)
    torch.testing.assert_close(first, second, rtol=0.0, atol=0.0)


def test_coarse_noise_injection_matters():
    generator = UNetGenerator(3, 1, 0, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    with torch.no_grad():
        for level in generator.encoder[1:]:
            level.noise_projection.weight.zero_()
            level.noise_projection.bias.zero_()
    without_coarse_noise = generator(inputs, conditions, noise)
    assert (output - without_coarse_noise).abs().max() > 1e-4


def test_zero_noise_channels_is_deterministic():
    generator = UNetGenerator(3, 1, 2, noise_channels=0, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, _ = make_batch(generator)
    first = generator(inputs, conditions)
    second = generator(inputs, conditions, torch.empty(2, 0, 16, 16))
    torch.testing.assert_close(first, second, rtol=0.0, atol=0.0)


# errors


def test_wrong_input_channels_raise():
    generator = UNetGenerator(4, 1, 2, **SMALL)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 16, 16\), expected \(B, 4"):
        generator(torch.randn(2, 3, 16, 16), torch.randn(2, 2))


def test_non_tensor_inputs_raise():
    generator = UNetGenerator(4, 1, 0, **SMALL)
    with pytest.raises(TypeError, match="got ndarray"):
        generator(torch.randn(2, 4, 16, 16).numpy(), None)


def test_wrong_condition_count_raises():
    generator = UNetGenerator(4, 1, 2, **SMALL)
    with pytest.raises(ValueError, match=r"shape \(2, 5\), expected \(2, 2\)"):
        generator(torch.randn(2, 4, 16, 16), torch.randn(2, 5))


def test_missing_conditions_raise():
    generator = UNetGenerator(4, 1, 2, **SMALL)
    with pytest.raises(ValueError, match="n_conditions=2"):
        generator(torch.randn(2, 4, 16, 16), None)


def test_indivisible_size_raises():
    generator = UNetGenerator(4, 1, 0, **SMALL)
    with pytest.raises(ValueError, match=r"\(18, 16\).*divisible by 4"):
        generator(torch.randn(2, 4, 18, 16), None)


def test_wrong_noise_shape_raises():
    generator = UNetGenerator(4, 1, 0, noise_channels=2, **SMALL)
    with pytest.raises(ValueError, match=r"noise has shape \(2, 3, 16, 16\)"):
        generator(torch.randn(2, 4, 16, 16), None, torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"in_channels": 1, "out_channels": 2}, "in_channels=1"),
        ({"norm_groups": 3}, "norm_groups=3"),
        ({"dropout": 1.0}, r"dropout=1\.0"),
        ({"n_conditions": -1}, "n_conditions=-1"),
        ({"in_channels": 0, "residual": False, "noise_channels": 0}, "noise_chan"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    defaults = {"in_channels": 3, "out_channels": 1, "n_conditions": 0, **SMALL}
    with pytest.raises(ValueError, match=message):
        UNetGenerator(**{**defaults, **arguments})


# training


def test_gradients_flow_to_all_parameters():
    generator = UNetGenerator(3, 2, 2, **SMALL)
    perturb_zero_parameters(generator)
    inputs, conditions, noise = make_batch(generator)
    output = generator(inputs, conditions, noise)
    output.square().mean().backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_compiles_without_graph_breaks():
    generator = UNetGenerator(3, 1, 2, **SMALL)
    inputs, conditions, noise = make_batch(generator)
    compiled = torch.compile(generator, backend="eager", fullgraph=True)
    output = compiled(inputs, conditions, noise)
    torch.testing.assert_close(output, generator(inputs, conditions, noise))


@pytest.mark.slow
@pytest.mark.parametrize("base_channels", [8, 32])
def test_step_time_report(base_channels):
    """Print the parameter count and one forward+backward time on 2 threads.

    Run with ``pytest -m slow -s``; the numbers are a report, not a check.
    """
    generator = UNetGenerator(4, 1, 2, base_channels=base_channels)
    perturb_zero_parameters(generator, std=0.05)
    inputs = torch.randn(16, 4, 64, 64)
    conditions = torch.randn(16, 2)
    n_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    times = []
    try:
        for _ in range(5):
            start = time.perf_counter()
            generator(inputs, conditions).square().mean().backward()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(n_threads)
    n_parameters = sum(p.numel() for p in generator.parameters())
    print(
        f"\nUNetGenerator(4, 1, 2, base_channels={base_channels}): {n_parameters} "
        f"parameters, forward+backward of (16, 4, 64, 64) on 2 threads: "
        f"min {min(times[1:]):.3f} s over {len(times) - 1} runs"
    )
    assert all(t > 0 for t in times)
