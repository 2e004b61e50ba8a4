"""Metrics, spectra and plots against held-out solver output."""

from surrogates.evaluation.evaluate import evaluate
from surrogates.evaluation.metrics import (
    crps_ensemble,
    ensemble_spread_skill,
    pearson_correlation,
    relative_l2,
    rmse,
)
from surrogates.evaluation.spectra import (
    isotropic_power_spectrum,
    spectrum_band_log_error,
)

__all__ = [
    "crps_ensemble",
    "ensemble_spread_skill",
    "evaluate",
    "isotropic_power_spectrum",
    "pearson_correlation",
    "relative_l2",
    "rmse",
    "spectrum_band_log_error",
]
