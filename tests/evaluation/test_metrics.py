import numpy as np
import pytest
import scoringrules
import torch

from surrogates.evaluation.metrics import (
    crps_ensemble,
    ensemble_spread_skill,
    pearson_correlation,
    relative_l2,
    rmse,
)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def _fields(generator, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=generator, dtype=dtype)


def test_relative_l2_identical_is_zero(generator):
    target = _fields(generator, 3, 2, 16, 16)
    error = relative_l2(target, target)
    assert error.shape == (3,)
    assert torch.equal(error, torch.zeros(3, dtype=torch.float64))


def test_relative_l2_doubled_is_one(generator):
    target = _fields(generator, 3, 2, 16, 16)
    error = relative_l2(2 * target, target)
    torch.testing.assert_close(error, torch.ones(3, dtype=torch.float64))


def test_relative_l2_float32_returns_float64(generator):
    target = _fields(generator, 2, 1, 8, 8, dtype=torch.float32)
    assert relative_l2(target + 1, target).dtype == torch.float64


def test_relative_l2_zero_target_is_finite():
    target = torch.zeros(2, 1, 8, 8)
    prediction = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    error = relative_l2(prediction, target)
    assert error[0].item() == 0.0
    assert torch.isfinite(error[1])
    assert error[1].item() > 1e6


def test_relative_l2_custom_dims(generator):
    target = _fields(generator, 2, 3, 8, 8)
    assert relative_l2(2 * target, target, dims=(-2, -1)).shape == (2, 3)


def test_relative_l2_shape_mismatch_raises(generator):
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\).*\(2, 1, 8, 9\)"):
        relative_l2(_fields(generator, 2, 1, 8, 8), _fields(generator, 2, 1, 8, 9))


def test_relative_l2_dims_out_of_range_raises(generator):
    target = _fields(generator, 8, 8)
    with pytest.raises(ValueError, match="out of range"):
        relative_l2(target, target, dims=(-3, -2, -1))


def test_rmse_constant_offset(generator):
    target = _fields(generator, 4, 2, 8, 8)
    error = rmse(target + 0.5, target)
    torch.testing.assert_close(error, torch.full((4,), 0.5, dtype=torch.float64))


def test_rmse_shape_mismatch_raises(generator):
    with pytest.raises(ValueError, match="same shape"):
        rmse(_fields(generator, 4, 8, 8), _fields(generator, 4, 8, 8, 1))


def test_correlation_affine_is_one(generator):
    target = _fields(generator, 3, 2, 16, 16)
    correlation = pearson_correlation(2.5 * target + 7.0, target)
    assert correlation.shape == (3, 2)
    torch.testing.assert_close(
        correlation, torch.ones(3, 2, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_correlation_negated_is_minus_one(generator):
    target = _fields(generator, 3, 2, 16, 16)
    correlation = pearson_correlation(-target, target)
    torch.testing.assert_close(
        correlation, -torch.ones(3, 2, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_correlation_independent_is_small(generator):
    target = _fields(generator, 32, 32)
    prediction = _fields(generator, 32, 32)
    assert abs(pearson_correlation(prediction, target).item()) < 0.15


def test_correlation_constant_is_nan(generator):
    target = _fields(generator, 8, 8)
    assert torch.isnan(pearson_correlation(torch.ones(8, 8), target))


def test_spread_skill_reliable_ensemble(generator):
    # members and truth are exchangeable draws from one distribution
    draws = 3.0 * _fields(generator, 9, 64, 1, 16, 16)
    ensemble, target = draws[:8], draws[8]
    scores = ensemble_spread_skill(ensemble, target)
    assert abs(scores["ratio"].item() - 1.0) < 0.1
    assert abs(scores["spread"].item() - 3.0) < 0.1


def test_spread_skill_batch_shapes(generator):
    scores = ensemble_spread_skill(
        _fields(generator, 4, 5, 2, 8, 8), _fields(generator, 5, 2, 8, 8)
    )
    for name in ("spread", "skill", "ratio"):
        assert scores[name].shape == ()
        assert scores[f"{name}_batch"].shape == (5,)


def test_spread_skill_collapsed_ensemble(generator):
    member = _fields(generator, 1, 6, 1, 16, 16)
    scores = ensemble_spread_skill(member.expand(8, -1, -1, -1, -1), member[0] + 1.0)
    assert scores["ratio"].item() == 0.0
    torch.testing.assert_close(scores["skill"], torch.tensor(1.0, dtype=torch.float64))


def test_spread_skill_without_grid_axes(generator):
    scores = ensemble_spread_skill(_fields(generator, 4, 6), _fields(generator, 6))
    assert scores["ratio_batch"].shape == (6,)


def test_spread_skill_shape_mismatch_raises(generator):
    with pytest.raises(ValueError, match=r"\(4, 2, 8, 8\).*\(3, 8, 8\)"):
        ensemble_spread_skill(
            _fields(generator, 4, 2, 8, 8), _fields(generator, 3, 8, 8)
        )


def test_spread_skill_single_member_raises(generator):
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_spread_skill(
            _fields(generator, 1, 2, 8, 8), _fields(generator, 2, 8, 8)
        )


@pytest.mark.parametrize(
    ("fair", "estimator"), [(True, "fair"), (True, "pwm"), (False, "nrg")]
)
def test_crps_matches_scoringrules(generator, fair, estimator):
    ensemble = _fields(generator, 7, 3, 8, 8)
    target = 0.5 + _fields(generator, 3, 8, 8)
    expected = scoringrules.crps_ensemble(
        target.numpy(), ensemble.numpy(), m_axis=0, estimator=estimator
    )
    crps = crps_ensemble(ensemble, target, fair=fair)
    np.testing.assert_allclose(crps.numpy(), expected, rtol=1e-6, atol=0)


def test_crps_single_member_is_absolute_error(generator):
    ensemble = _fields(generator, 1, 8, 8)
    target = _fields(generator, 8, 8)
    crps = crps_ensemble(ensemble, target, fair=False)
    torch.testing.assert_close(crps, (ensemble[0] - target).abs())


def test_crps_fair_single_member_raises(generator):
    with pytest.raises(ValueError, match="at least 2"):
        crps_ensemble(_fields(generator, 1, 8, 8), _fields(generator, 8, 8))


def test_crps_float32_input(generator):
    ensemble = _fields(generator, 5, 8, 8, dtype=torch.float32)
    target = _fields(generator, 8, 8, dtype=torch.float32)
    crps = crps_ensemble(ensemble, target)
    expected = crps_ensemble(ensemble.double(), target.double())
    assert crps.dtype == torch.float64
    torch.testing.assert_close(crps, expected)


def test_crps_shape_mismatch_raises(generator):
    with pytest.raises(ValueError, match=r"\(5, 8, 8\).*\(8, 9\)"):
        crps_ensemble(_fields(generator, 5, 8, 8), _fields(generator, 8, 9))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_cpu(generator):
    ensemble = _fields(generator, 6, 2, 1, 16, 16, dtype=torch.float32)
    target = _fields(generator, 2, 1, 16, 16, dtype=torch.float32)
    device = torch.device("cuda")
    pairs = [
        (
            relative_l2(ensemble[0], target),
            relative_l2(ensemble[0].to(device), target.to(device)),
        ),
        (
            crps_ensemble(ensemble, target),
            crps_ensemble(ensemble.to(device), target.to(device)),
        ),
        (
            ensemble_spread_skill(ensemble, target)["ratio"],
            ensemble_spread_skill(ensemble.to(device), target.to(device))["ratio"],
        ),
    ]
    for on_cpu, on_cuda in pairs:
        assert on_cuda.device.type == "cuda"
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-10, atol=1e-12)
