"""Evaluate surrogates on held-out solver output: errors, spectra, ensembles, speed.

The test trajectories, their split and the normalization are those stored in the
surrogate's checkpoint; nothing is refitted. Results go to ``metrics.json`` and PNG
plots in the output directory.

With a layout mask, every pointwise metric (relative L2, correlation, spread and
skill) runs over the valid points alone, selected by the mask. Power spectra need
the whole grid, so they are computed on fields whose masked points are set to 0,
in truth and predictions alike.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.emulator import Surrogate
from surrogates.evaluation import plots
from surrogates.evaluation.metrics import (
    ensemble_spread_skill,
    pearson_correlation,
    relative_l2,
)
from surrogates.evaluation.spectra import (
    isotropic_power_spectrum,
    spectrum_band_log_error,
)
from surrogates.evaluation.speed import measure_speedup
from surrogates.evaluation.test_data import TestData, load_test_data

log = logging.getLogger(__name__)

SolverAdvance = Callable[
    [torch.Tensor, Mapping[str, torch.Tensor], float], torch.Tensor
]


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean())


def one_step_errors(
    models: Mapping[str, Surrogate], data: TestData
) -> dict[str, float]:
    """Return the mean one-step relative L2 of each model and of persistence.

    With ``data.mask``, the errors run over the valid points only.
    """
    inputs, conditions, targets = data.one_step_batch()
    error = functools.partial(relative_l2, mask=data.mask)
    errors = {}
    for name, model in models.items():
        prediction = model.sample(inputs, conditions, n_samples=1)[0].cpu()
        errors[name] = _mean(error(prediction, targets))
    if data.persistence_available:
        errors["persistence"] = _mean(error(data.persistence(inputs), targets))
    return errors


def _per_step(metric, prediction: torch.Tensor, truth: torch.Tensor) -> list[float]:
    # prediction, truth: (B, T, C, H, W) -> one value per step 1..T-1
    return [
        _mean(metric(prediction[:, t], truth[:, t])) for t in range(1, truth.shape[1])
    ]


def rollout_metrics(
    rollouts: Mapping[str, torch.Tensor],
    truth: torch.Tensor,
    step_duration: float,
    mask: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Relative L2 and correlation per step for each model, spread-skill for ensembles.

    ``rollouts[name]`` has shape ``(M, B, T, C, H, W)``; member 0 is scored as the
    single-sample forecast. ``truth`` has shape ``(B, T, C, H, W)``. ``mask``
    (bool ``(H, W)``, True at valid points) restricts every metric to the valid
    points.
    """
    relative_error = functools.partial(relative_l2, mask=mask)
    correlation = functools.partial(pearson_correlation, dims=(-2, -1), mask=mask)
    n_steps = truth.shape[1] - 1
    result: dict[str, Any] = {
        "lead_time": [step_duration * (t + 1) for t in range(n_steps)],
        "rel_l2": {},
        "correlation": {},
        "ensemble": {},
    }
    for name, values in rollouts.items():
        result["rel_l2"][name] = _per_step(relative_error, values[0], truth)
        result["correlation"][name] = _per_step(correlation, values[0], truth)
        if values.shape[0] >= 2:
            scores = [
                ensemble_spread_skill(values[:, :, t], truth[:, t], mask=mask)
                for t in range(1, n_steps + 1)
            ]
            result["ensemble"][name] = {
                "n_members": values.shape[0],
                "spread": [float(s["spread"]) for s in scores],
                "skill": [float(s["skill"]) for s in scores],
                "spread_skill_ratio": [float(s["ratio"]) for s in scores],
                "ensemble_mean_rel_l2": _per_step(
                    relative_error, values.mean(0), truth
                ),
            }
    return result


def mean_spectrum(
    values: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return wavenumbers and the spectrum of ``(..., C, H, W)`` as ``(C, K)``.

    With ``mask`` (bool ``(H, W)``, True at valid points), masked points are set
    to 0 before the Fourier transform, so the spectrum is that of the zero-filled
    field.
    """
    values = values.double()
    if mask is not None:
        values = torch.where(mask.to(values.device), values, 0.0)
    k, spectrum = isotropic_power_spectrum(values)
    return k, spectrum.reshape(-1, *spectrum.shape[-2:]).mean(dim=0)


def spectrum_errors(
    rollouts: Mapping[str, torch.Tensor],
    truth: torch.Tensor,
    steps: list[int],
    k_max: int,
    mask: torch.Tensor | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Band log errors of the mean spectra at the given rollout steps.

    Returns the errors (``{"step_<n>": {model: {band: value}}}``) and the spectra
    themselves for plotting. With ``mask``, both truth and rollouts are zero-filled
    at masked points before their spectra are taken (:func:`mean_spectrum`).
    """
    errors: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for step in steps:
        k, reference = mean_spectrum(truth[:, step], mask)
        key = f"step_{step}"
        errors[key] = {}
        curves[key] = {"k": k.numpy(), "solver": reference.mean(0).numpy()}
        for name, values in rollouts.items():
            _, spectrum = mean_spectrum(values[:, :, step], mask)
            bands = spectrum_band_log_error(spectrum, reference, k_max=k_max)
            edges = bands.pop("band_edges").tolist()
            errors[key][name] = {band: _mean(v) for band, v in bands.items()}
            errors[key]["band_edges"] = edges
            curves[key][name] = spectrum.mean(0).numpy()
    return errors, curves


def evaluate(
    run_dir: Path | str,
    *,
    baseline_dir: Path | str | None = None,
    output_dir: Path | str | None = None,
    n_rollout_steps: int = 10,
    n_ensemble: int = 8,
    max_initial_states: int = 16,
    max_one_step_samples: int = 256,
    spectrum_k_max_fraction: float = 2 / 3,
    solver_advance: SolverAdvance | None = None,
    n_plot_examples: int = 1,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate the surrogate of ``run_dir`` on its held-out test trajectories.

    Parameters
    ----------
    run_dir
        Run directory or checkpoint of the cGAN.
    baseline_dir
        Optional run directory of a baseline (for example adversarial weight 0),
        evaluated on the same initial states.
    output_dir
        Where ``metrics.json`` and the plots go; defaults to ``run_dir``.
    n_rollout_steps
        Autoregressive steps, capped by the length of the test trajectories.
    n_ensemble
        Noise samples per initial state for the cGAN ensemble.
    spectrum_k_max_fraction
        Spectra are compared for shells ``1 .. fraction * min(H, W) / 2``.
    solver_advance
        ``solver_advance(states (B, C, H, W), conditions {name: (B,)}, duration)``
        advancing physical states by a physical duration; timed against the
        surrogate over the same duration on the same device. Skipped when None.

    Returns
    -------
    dict
        The content written to ``metrics.json``.
    """
    output_dir = Path(output_dir or run_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    models = {"cgan": Surrogate.load(run_dir, device=device)}
    if baseline_dir is not None:
        models["baseline"] = Surrogate.load(baseline_dir, device=device)
    data = load_test_data(
        models["cgan"],
        n_rollout_steps=n_rollout_steps,
        max_initial_states=max_initial_states,
        max_one_step_samples=max_one_step_samples,
    )
    log.info(
        "evaluating on %d test trajectories: %d rollouts of %d steps",
        len(data.trajectories),
        data.initial_states.shape[0],
        data.n_steps,
    )
    metrics: dict[str, Any] = {"one_step_rel_l2": one_step_errors(models, data)}

    rollouts = {
        name: model.rollout_tensor(
            data.initial_states,
            data.conditions,
            data.n_steps,
            n_samples=n_ensemble if name == "cgan" else 1,
        ).cpu()
        for name, model in models.items()
    }
    if data.persistence_available:
        rollouts["persistence"] = data.persistence_rollout()
    step_duration = models["cgan"].step_duration
    metrics["rollout"] = rollout_metrics(rollouts, data.truth, step_duration, data.mask)

    height, width = data.truth.shape[-2:]
    k_max = max(3, math.floor(spectrum_k_max_fraction * min(height, width) / 2))
    steps = sorted({1, data.n_steps})
    metrics["spectrum_log10_error"], spectra = spectrum_errors(
        rollouts, data.truth, steps, k_max, data.mask
    )
    metrics["spectrum_k_max"] = k_max

    if solver_advance is not None:
        metrics["speed"] = measure_speedup(
            models["cgan"], data, solver_advance, data.n_steps * step_duration
        )
    metrics["headline"] = headline(metrics, data.n_steps)
    metrics["setup"] = {
        "run_dir": str(run_dir),
        "baseline_dir": None if baseline_dir is None else str(baseline_dir),
        "test_trajectories": data.trajectories,
        "n_initial_states": int(data.initial_states.shape[0]),
        "n_rollout_steps": data.n_steps,
        "n_ensemble": n_ensemble,
        "step_duration": step_duration,
        "mask": describe_mask(data.mask),
    }
    write_plots(output_dir, rollouts, data, spectra, metrics, k_max, n_plot_examples)
    path = output_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2))
    log.info("wrote %s", path)
    return metrics


def describe_mask(mask: torch.Tensor | None) -> dict[str, Any] | None:
    """Return the valid and total point counts and how each metric treats the mask."""
    if mask is None:
        return None
    return {
        "n_valid": int(mask.sum()),
        "n_points": mask.numel(),
        "pointwise_metrics": "over the valid points only",
        "spectra": "on fields with masked points set to 0",
    }


def headline(metrics: Mapping[str, Any], n_steps: int) -> dict[str, Any]:
    """Pick the figures a reader looks at first."""
    rollout = metrics["rollout"]
    result: dict[str, Any] = {
        f"one_step_rel_l2_{name}": value
        for name, value in metrics["one_step_rel_l2"].items()
    }
    for name, values in rollout["rel_l2"].items():
        result[f"rollout_rel_l2_step{n_steps}_{name}"] = values[-1]
    for name, values in rollout["ensemble"].items():
        result[f"spread_skill_ratio_step{n_steps}_{name}"] = values[
            "spread_skill_ratio"
        ][-1]
    first = metrics["spectrum_log10_error"]["step_1"]
    for name, bands in first.items():
        if name != "band_edges":
            result[f"spectrum_high_k_error_step1_{name}"] = bands["high"]
    if "speed" in metrics:
        result["speedup"] = metrics["speed"]["speedup"]
    return result


def write_plots(
    output_dir, rollouts, data, spectra, metrics, k_max, n_examples
) -> None:
    """Write field, spectrum and lead-time plots to ``output_dir/plots``."""
    plot_dir = output_dir / "plots"
    for step_key, curves in spectra.items():
        k = curves.pop("k")
        plots.plot_spectra(
            plot_dir / f"spectrum_{step_key}.png",
            k,
            curves,
            title=f"mean power spectrum at rollout {step_key.replace('_', ' ')}",
            k_max=k_max,
            reference="solver",
        )
    rollout = metrics["rollout"]
    plots.plot_lead_time(
        plot_dir / "lead_time.png",
        np.asarray(rollout["lead_time"]),
        {
            "relative L2": {k: np.asarray(v) for k, v in rollout["rel_l2"].items()},
            "correlation": {
                k: np.asarray(v) for k, v in rollout["correlation"].items()
            },
        },
    )
    for example in range(min(n_examples, data.truth.shape[0])):
        for step in sorted({1, data.n_steps}):
            truth = data.truth[example, step, 0].numpy()
            panels = {"solver": truth}
            for name in ("cgan", "baseline"):
                if name in rollouts:
                    panels[name] = rollouts[name][0, example, step, 0].numpy()
            panels["cgan error"] = panels["cgan"] - truth
            if data.mask is not None:
                # NaN leaves masked points blank in the plots.
                outside = ~data.mask.numpy()
                panels = {k: np.where(outside, np.nan, v) for k, v in panels.items()}
            plots.plot_fields(
                plot_dir / f"fields_example{example}_step{step}.png",
                panels,
                title=f"{data.output_channel_names[0]}, rollout step {step}",
            )
