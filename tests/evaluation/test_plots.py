import numpy as np
import pytest
import torch

from surrogates.evaluation.plots import plot_fields, plot_lead_time, plot_spectra

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _assert_png(path):
    assert path.is_file()
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def _panels(rng):
    truth = rng.standard_normal((16, 16))
    sample = truth + 0.1 * rng.standard_normal((16, 16))
    return {"truth": truth, "sample": sample, "error": sample - truth}


def test_plot_fields_writes_png(tmp_path, rng):
    path = plot_fields(tmp_path / "nested" / "fields.png", _panels(rng), title="t = 1")
    assert path == tmp_path / "nested" / "fields.png"
    _assert_png(path)


def test_plot_fields_nan_and_constant(tmp_path, rng):
    panels = _panels(rng)
    panels["truth"][3:5, 2:9] = np.nan
    panels["error"] = np.full((16, 16), np.nan)
    panels["constant"] = np.zeros((16, 16))
    _assert_png(plot_fields(tmp_path / "fields.png", panels, symmetric=False))


def test_plot_fields_accepts_tensors(tmp_path):
    panels = {"truth": torch.randn(8, 12), "sample": torch.randn(8, 12)}
    _assert_png(plot_fields(tmp_path / "fields.png", panels, own_scale=["sample"]))


def test_plot_fields_wrong_shape_raises(tmp_path, rng):
    with pytest.raises(ValueError, match=r"'truth'.*\(2, 16, 16\)"):
        plot_fields(
            tmp_path / "fields.png", {"truth": rng.standard_normal((2, 16, 16))}
        )


def test_plot_fields_unknown_own_scale_raises(tmp_path, rng):
    with pytest.raises(ValueError, match="difference"):
        plot_fields(tmp_path / "fields.png", _panels(rng), own_scale=["difference"])


def test_plot_fields_empty_raises(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_fields(tmp_path / "fields.png", {})


def test_plot_fields_non_png_suffix_raises(tmp_path, rng):
    with pytest.raises(ValueError, match=r"\.png"):
        plot_fields(tmp_path / "fields.pdf", _panels(rng))


def test_plot_spectra_writes_png(tmp_path):
    k = np.arange(9, dtype=float)
    spectra = {"solver": 1.0 / (1.0 + k**3), "cGAN": 1.2 / (1.0 + k**3)}
    path = plot_spectra(tmp_path / "spectra.png", k, spectra, k_max=5, title="E(k)")
    _assert_png(path)


def test_plot_spectra_nan_and_zero(tmp_path):
    k = np.arange(9, dtype=float)
    spectrum = 1.0 / (1.0 + k**2)
    spectrum[4] = np.nan
    spectrum[6] = 0.0
    _assert_png(plot_spectra(tmp_path / "spectra.png", k, {"solver": spectrum}))


def test_plot_spectra_wrong_shape_raises(tmp_path):
    k = np.arange(9, dtype=float)
    with pytest.raises(ValueError, match=r"'cGAN'.*\(8,\)"):
        plot_spectra(tmp_path / "spectra.png", k, {"cGAN": np.ones(8)})


def test_plot_spectra_k_not_1d_raises(tmp_path):
    with pytest.raises(ValueError, match="k must be a 1-D"):
        plot_spectra(tmp_path / "spectra.png", np.ones((3, 3)), {"cGAN": np.ones(3)})


def _curves(n_times):
    lead_times = np.arange(1, n_times + 1, dtype=float)
    curves = {
        "relative L2": {
            "cGAN": 0.05 * lead_times,
            "U-Net baseline": 0.07 * lead_times,
            "persistence": 0.2 * np.sqrt(lead_times),
        },
        "correlation": {
            "cGAN": 1.0 - 0.02 * lead_times,
            "persistence": 1.0 - 0.1 * lead_times,
        },
    }
    return lead_times, curves


def test_plot_lead_time_writes_png(tmp_path):
    lead_times, curves = _curves(10)
    path = plot_lead_time(tmp_path / "a" / "b" / "lead.png", lead_times, curves)
    _assert_png(path)


def test_plot_lead_time_nan(tmp_path):
    lead_times, curves = _curves(10)
    curves["correlation"]["cGAN"][6:] = np.nan
    _assert_png(plot_lead_time(tmp_path / "lead.png", lead_times, curves, title="NS"))


def test_plot_lead_time_wrong_shape_raises(tmp_path):
    lead_times, curves = _curves(10)
    curves["correlation"]["cGAN"] = np.ones(9)
    with pytest.raises(ValueError, match=r"'correlation'/'cGAN'.*\(9,\)"):
        plot_lead_time(tmp_path / "lead.png", lead_times, curves)


def test_plot_lead_time_empty_metric_raises(tmp_path):
    lead_times, _ = _curves(10)
    with pytest.raises(ValueError, match="'correlation' has no curves"):
        plot_lead_time(tmp_path / "lead.png", lead_times, {"correlation": {}})


def test_plots_register_no_pyplot_figures(tmp_path, rng):
    from matplotlib import pyplot

    open_before = pyplot.get_fignums()
    plot_fields(tmp_path / "fields.png", _panels(rng))
    plot_spectra(tmp_path / "spectra.png", np.arange(4.0), {"solver": np.ones(4)})
    lead_times, curves = _curves(4)
    plot_lead_time(tmp_path / "lead.png", lead_times, curves)
    assert pyplot.get_fignums() == open_before
