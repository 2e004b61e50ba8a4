"""Metrics with a mask: valid points selected, NaN at masked points never counted."""

import math
from types import SimpleNamespace

import h5py
import pytest
import torch

from surrogates.data import Normalizer, StepTask
from surrogates.evaluation.evaluate import mean_spectrum, rollout_metrics
from surrogates.evaluation.metrics import (
    crps_ensemble,
    ensemble_spread_skill,
    pearson_correlation,
    relative_l2,
    rmse,
)
from surrogates.evaluation.test_data import load_test_data

N_Y, N_X = 12, 16


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(99)


@pytest.fixture
def mask():
    valid = torch.ones(N_Y, N_X, dtype=torch.bool)
    valid[2:6, 4:12] = False
    valid[-1, -1] = False
    return valid


def _fields(generator, *shape):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _poison(values, mask):
    # NaN at every masked point of a copy of values (..., H, W).
    return torch.where(mask, values, torch.nan)


PAIR_METRICS = [
    (relative_l2, {}, {"dims": (-2, -1)}),
    (rmse, {}, {"dims": (-2, -1)}),
    (pearson_correlation, {}, {"dims": -1}),
    (relative_l2, {"dims": (-2, -1)}, {"dims": -1}),
]


@pytest.mark.parametrize(("metric", "masked_kwargs", "selected_kwargs"), PAIR_METRICS)
def test_pair_metric_equals_selected_points(
    generator, mask, metric, masked_kwargs, selected_kwargs
):
    prediction = _fields(generator, 3, 2, N_Y, N_X)
    target = _fields(generator, 3, 2, N_Y, N_X)
    masked = metric(prediction, target, mask=mask, **masked_kwargs)
    selected = metric(prediction[..., mask], target[..., mask], **selected_kwargs)
    torch.testing.assert_close(masked, selected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("metric", "masked_kwargs"),
    [(metric, kwargs) for metric, kwargs, _ in PAIR_METRICS],
)
def test_pair_metric_ignores_masked_nan(generator, mask, metric, masked_kwargs):
    prediction = _fields(generator, 3, 2, N_Y, N_X)
    target = _fields(generator, 3, 2, N_Y, N_X)
    clean = metric(prediction, target, mask=mask, **masked_kwargs)
    poisoned = metric(
        _poison(prediction, mask), _poison(target, mask), mask=mask, **masked_kwargs
    )
    assert torch.isfinite(poisoned).all()
    torch.testing.assert_close(poisoned, clean, rtol=0, atol=0)


def test_spread_skill_equals_selected_points(generator, mask):
    ensemble = _fields(generator, 4, 3, 2, N_Y, N_X)
    target = _fields(generator, 3, 2, N_Y, N_X)
    masked = ensemble_spread_skill(
        _poison(ensemble, mask), _poison(target, mask), mask=mask
    )
    selected = ensemble_spread_skill(ensemble[..., mask], target[..., mask])
    for key, value in selected.items():
        assert torch.isfinite(masked[key]).all(), key
        torch.testing.assert_close(masked[key], value, rtol=1e-12, atol=0)


def test_crps_equals_selected_points(generator, mask):
    ensemble = _fields(generator, 5, 2, 1, N_Y, N_X)
    target = _fields(generator, 2, 1, N_Y, N_X)
    masked = crps_ensemble(_poison(ensemble, mask), _poison(target, mask), mask=mask)
    selected = crps_ensemble(ensemble[..., mask], target[..., mask])
    assert masked.shape == (2, 1, int(mask.sum()))
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked, selected, rtol=1e-12, atol=0)


def test_mask_of_wrong_shape_raises(generator, mask):
    values = _fields(generator, 2, 1, N_Y, N_X)
    with pytest.raises(ValueError, match="trailing spatial shape"):
        rmse(values, values, mask=mask.T)


def test_mask_of_wrong_dtype_raises(generator, mask):
    values = _fields(generator, 2, 1, N_Y, N_X)
    with pytest.raises(ValueError, match="bool tensor"):
        rmse(values, values, mask=mask.double())


def test_mask_needs_reduced_axes(generator, mask):
    values = _fields(generator, 2, 1, N_Y, N_X)
    with pytest.raises(ValueError, match="unreduced"):
        rmse(values, values, dims=-1, mask=mask)


def test_spectrum_of_zero_filled_field(generator, mask):
    values = _fields(generator, 2, 1, N_Y, N_X)
    k, masked = mean_spectrum(_poison(values, mask), mask)
    _, zero_filled = mean_spectrum(torch.where(mask, values, 0.0))
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked, zero_filled, rtol=1e-12, atol=0)
    assert k.shape[0] == masked.shape[-1]


def test_rollout_metrics_ignore_masked_nan(generator, mask):
    truth = _fields(generator, 2, 3, 1, N_Y, N_X)
    rollout = truth.unsqueeze(0) + 0.1 * _fields(generator, 3, 2, 3, 1, N_Y, N_X)
    clean = rollout_metrics({"cgan": rollout}, truth, 0.5, mask)
    poisoned = rollout_metrics(
        {"cgan": _poison(rollout, mask)}, _poison(truth, mask), 0.5, mask
    )
    assert poisoned == clean
    ratios = poisoned["ensemble"]["cgan"]["spread_skill_ratio"]
    assert all(math.isfinite(ratio) for ratio in ratios)


def test_test_data_fills_masked_inputs(tmp_path, mask):
    values = torch.randn(3, 5, N_Y, N_X, generator=torch.Generator().manual_seed(4))
    values = torch.where(mask, values, torch.nan).numpy().astype("float32")
    with h5py.File(tmp_path / "basin.h5", "w") as handle:
        handle["u"] = values
        handle["ocean"] = mask.numpy().astype("int8")
    layout = {
        "files": [str(tmp_path / "basin.h5")],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
        "mask": {"path": "ocean", "axes": ["y", "x"]},
    }
    normalizer = Normalizer({"u": [0.25]}, {"u": [2.0]}, {}, {}, {}, {})
    surrogate = SimpleNamespace(
        meta={"layout": layout, "splits": {"test": [1, 2]}},
        task=StepTask(("u",), ("u",)),
        normalizer=normalizer,
    )
    data = load_test_data(
        surrogate, n_rollout_steps=2, max_initial_states=4, max_one_step_samples=4
    )
    assert torch.equal(data.mask, mask)
    for inputs in (data.initial_states, data.one_step_inputs):
        assert torch.isfinite(inputs).all()
        assert torch.all(inputs[..., ~mask] == 0.25)
    assert torch.isnan(data.truth[..., ~mask]).all()
    assert torch.isfinite(data.truth[..., mask]).all()
