import math

import numpy as np
import pytest
import torch

from surrogates.evaluation.spectra import (
    isotropic_power_spectrum,
    spectrum_band_log_error,
)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(2024)


def _grid(n_points):
    return torch.arange(n_points, dtype=torch.float64) * 2 * math.pi / n_points


def test_single_mode_in_its_shell():
    x = _grid(16)
    field = torch.sin(3 * x)[None, :].expand(16, 16)
    k, spectrum = isotropic_power_spectrum(field)
    assert k.shape == (9,)
    assert spectrum[3].item() == pytest.approx(0.5, rel=1e-12)
    others = torch.cat([spectrum[:3], spectrum[4:]])
    assert others.abs().max().item() < 1e-12


def test_diagonal_mode_rounds_to_nearest_shell():
    x = _grid(16)
    field = torch.cos(3 * x)[:, None] * torch.cos(4 * x)[None, :]
    _, spectrum = isotropic_power_spectrum(field)
    assert spectrum[5].item() == pytest.approx(0.25, rel=1e-12)


def test_parseval_square_grid(generator):
    field = torch.randn(3, 2, 16, 16, generator=generator, dtype=torch.float64)
    _, spectrum = isotropic_power_spectrum(field, include_corners=True)
    mean_square = field.square().mean(dim=(-2, -1))
    torch.testing.assert_close(spectrum.sum(dim=-1), mean_square, rtol=1e-10, atol=0)


@pytest.mark.parametrize("shape", [(15, 15), (16, 32), (17, 12)])
def test_parseval_other_grids(generator, shape):
    field = torch.randn(2, *shape, generator=generator, dtype=torch.float64)
    _, spectrum = isotropic_power_spectrum(field, include_corners=True)
    mean_square = field.square().mean(dim=(-2, -1))
    torch.testing.assert_close(spectrum.sum(dim=-1), mean_square, rtol=1e-10, atol=0)


def test_parseval_band_limited_without_corners(generator):
    # zero every mode above shell 5, as dealiasing does, then no corner has power
    field = torch.randn(2, 16, 16, generator=generator, dtype=torch.float64)
    coefficients = torch.fft.fft2(field)
    n = torch.fft.fftfreq(16, d=1 / 16)
    coefficients[..., (n[:, None] ** 2 + n[None, :] ** 2) > 25] = 0
    field = torch.fft.ifft2(coefficients).real
    k, spectrum = isotropic_power_spectrum(field)
    mean_square = field.square().mean(dim=(-2, -1))
    assert k.shape == (9,)
    torch.testing.assert_close(spectrum.sum(dim=-1), mean_square, rtol=1e-10, atol=0)


def test_non_square_grid_shells():
    # equal spacing: L_y = 16 and L_x = 32, so shells count in units of 2π/32
    y = _grid(16)
    field = torch.sin(2 * y)[:, None].expand(16, 32)
    k, spectrum = isotropic_power_spectrum(field)
    assert k.shape == (17,)
    assert spectrum[4].item() == pytest.approx(0.5, rel=1e-12)


def test_square_domain_on_non_square_grid():
    y = _grid(16)
    field = torch.sin(2 * y)[:, None].expand(16, 32)
    k, spectrum = isotropic_power_spectrum(field, domain_length=2 * math.pi)
    assert k.shape == (9,)
    assert spectrum[2].item() == pytest.approx(0.5, rel=1e-12)


def test_float32_batched_input(generator):
    field = torch.randn(4, 3, 16, 16, generator=generator)
    k, spectrum = isotropic_power_spectrum(field)
    assert spectrum.shape == (4, 3, 9)
    assert spectrum.dtype == torch.float64
    assert k.dtype == torch.float64


def test_white_noise_grows_linearly(generator):
    field = torch.randn(64, 32, 32, generator=generator, dtype=torch.float64)
    k, spectrum = isotropic_power_spectrum(field)
    mean_spectrum = spectrum.mean(dim=0)
    slope, _ = np.polyfit(np.log(k[1:].numpy()), np.log(mean_spectrum[1:].numpy()), 1)
    assert abs(slope - 1.0) < 0.15


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        isotropic_power_spectrum(torch.zeros(16))
    with pytest.raises(ValueError, match="domain_length"):
        isotropic_power_spectrum(torch.zeros(8, 8), domain_length=-1.0)


def test_scaled_field_band_error(generator):
    field = torch.randn(4, 16, 16, generator=generator, dtype=torch.float64)
    _, spectrum_target = isotropic_power_spectrum(field)
    _, spectrum_prediction = isotropic_power_spectrum(3.0 * field)
    errors = spectrum_band_log_error(spectrum_prediction, spectrum_target)
    for name in ("low", "middle", "high"):
        assert errors[name].shape == (4,)
        torch.testing.assert_close(
            errors[name],
            torch.full((4,), 2 * math.log10(3.0), dtype=torch.float64),
            rtol=1e-12,
            atol=1e-12,
        )


def test_identical_spectra_zero_error(generator):
    spectrum = torch.rand(9, generator=generator, dtype=torch.float64)
    errors = spectrum_band_log_error(spectrum, spectrum)
    for name in ("low", "middle", "high"):
        assert errors[name].item() == 0.0


@pytest.mark.parametrize(
    ("k_max", "n_bands"), [(8, 3), (5, 3), (10, 4), (7, 7), (9, 1)]
)
def test_band_edges_cover_range(k_max, n_bands):
    spectrum = torch.ones(12)
    edges = spectrum_band_log_error(spectrum, spectrum, k_max=k_max, n_bands=n_bands)[
        "band_edges"
    ].tolist()
    widths = np.diff(edges)
    assert len(edges) == n_bands + 1
    assert edges[0] == 1
    assert edges[-1] == k_max + 1
    assert widths.min() >= 1
    assert widths.max() - widths.min() <= 1


def test_band_names():
    spectrum = torch.ones(12)
    three = spectrum_band_log_error(spectrum, spectrum)
    four = spectrum_band_log_error(spectrum, spectrum, n_bands=4)
    assert set(three) == {"low", "middle", "high", "band_edges"}
    assert set(four) == {"band0", "band1", "band2", "band3", "band_edges"}


def test_band_error_uses_only_its_shells():
    target = torch.ones(10)
    prediction = target.clone()
    prediction[7:] = 100.0  # shells 7, 8, 9 are the high band of k_max = 9
    errors = spectrum_band_log_error(prediction, target)
    assert errors["low"].item() == 0.0
    assert errors["middle"].item() == 0.0
    assert errors["high"].item() == pytest.approx(2.0, rel=1e-12)


def test_band_error_k_max_excludes_tail():
    target = torch.ones(10)
    prediction = target.clone()
    prediction[7:] = 100.0
    errors = spectrum_band_log_error(prediction, target, k_max=6)
    assert errors["high"].item() == 0.0


def test_band_error_floor_keeps_empty_shells_finite():
    target = torch.ones(10)
    prediction = torch.zeros(10)
    errors = spectrum_band_log_error(prediction, target, floor=1e-20)
    assert errors["low"].item() == pytest.approx(20.0, rel=1e-12)


def test_band_error_invalid_arguments_raise():
    spectrum = torch.ones(9)
    with pytest.raises(ValueError, match="k_max=9"):
        spectrum_band_log_error(spectrum, spectrum, k_max=9)
    with pytest.raises(ValueError, match="n_bands=5"):
        spectrum_band_log_error(spectrum, spectrum, k_max=4, n_bands=5)
    with pytest.raises(ValueError, match=r"\(9,\).*\(8,\)"):
        spectrum_band_log_error(spectrum, torch.ones(8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_spectrum_on_cuda_matches_cpu(generator):
    field = torch.randn(2, 32, 32, generator=generator)
    _, on_cpu = isotropic_power_spectrum(field)
    k, on_cuda = isotropic_power_spectrum(field.cuda())
    assert k.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-10, atol=1e-14)
