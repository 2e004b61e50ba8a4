"""A tiny train -> evaluate -> emulate run on a 16x16 grid."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from datafiles import TASK, TINY_MODEL, canonical_layout, write_canonical_file

from surrogates.emulator import Surrogate
from surrogates.evaluation import evaluate
from surrogates.training import train_surrogate

TRAINING = {"max_steps": 6, "batch_size": 4, "checkpoint_every": 3, "log_every": 1}


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    path = root / "waves.h5"
    write_canonical_file(path, n_trajectories=8, n_times=10)
    layout = canonical_layout(path)
    arguments = {"layout": layout, "task": TASK, "model": TINY_MODEL}
    train_surrogate(**arguments, training=TRAINING, run_dir=root / "cgan")
    baseline = {**TRAINING, "adversarial_weight": 0.0}
    train_surrogate(**arguments, training=baseline, run_dir=root / "baseline")

    def advance(states, conditions, duration):
        return states + 0.0 * duration  # a stand-in solver: persistence

    metrics = evaluate(
        root / "cgan",
        baseline_dir=root / "baseline",
        n_rollout_steps=4,
        n_ensemble=3,
        solver_advance=advance,
    )
    return root, metrics


def test_run_directory_files(trained):
    root, _ = trained
    assert (root / "cgan" / "metrics.json").is_file()
    assert (root / "cgan" / "checkpoints" / "latest").is_file()
    assert (root / "cgan" / "logs" / "scalars.csv").is_file()
    plots = sorted(p.name for p in (root / "cgan" / "plots").iterdir())
    assert "lead_time.png" in plots
    assert "spectrum_step_1.png" in plots
    assert "spectrum_step_4.png" in plots
    assert "fields_example0_step1.png" in plots


def test_metrics_keys_and_finite_values(trained):
    root, metrics = trained
    stored = json.loads((root / "cgan" / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(metrics))
    assert set(metrics["one_step_rel_l2"]) == {"cgan", "baseline", "persistence"}
    rollout = metrics["rollout"]
    assert len(rollout["lead_time"]) == 4
    for name in ("cgan", "baseline", "persistence"):
        assert len(rollout["rel_l2"][name]) == 4
        assert len(rollout["correlation"][name]) == 4
    ensemble = rollout["ensemble"]["cgan"]
    assert ensemble["n_members"] == 3
    assert len(ensemble["spread_skill_ratio"]) == 4
    for step in ("step_1", "step_4"):
        bands = metrics["spectrum_log10_error"][step]["cgan"]
        assert set(bands) == {"low", "middle", "high"}
    assert metrics["speed"]["speedup"] > 0
    assert _finite(metrics)
    # persistence has no error at lead 0 and a known one-step error
    assert metrics["one_step_rel_l2"]["persistence"] > 0


def test_emulator_rollout_dataset(trained, tmp_path):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    initial = np.random.default_rng(0).standard_normal((1, 16, 16)).astype(np.float32)
    dataset = surrogate.rollout(initial, {"viscosity": 0.015}, n_steps=3, n_samples=2)
    field = dataset["vorticity"]
    assert field.dims == ("sample", "time", "y", "x")
    assert field.shape == (2, 4, 16, 16)
    assert field.attrs["units"] == "1/s"
    assert dataset["time"].attrs["units"] == "s"
    np.testing.assert_allclose(dataset["time"].values, [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(field.values[:, 0], np.repeat(initial, 2, 0), atol=1e-5)
    assert np.isfinite(field.values).all()

    path = surrogate.write_hdf5(dataset, tmp_path / "rollout.h5")
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == "coolmathgans-1"
        assert handle["fields/vorticity"].shape == (2, 4, 16, 16)
        np.testing.assert_allclose(handle["parameters/viscosity"][()], [0.015] * 2)
        assert handle["fields/vorticity"].attrs["units"] == "1/s"


def test_emulator_sample_shapes_and_noise(trained):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    inputs = torch.randn(3, 1, 16, 16)
    samples = surrogate.sample(inputs, [[0.012]] * 3, n_samples=4)
    assert samples.shape == (4, 3, 1, 16, 16)
    assert torch.isfinite(samples).all()


def test_out_of_range_condition_warns(trained):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    with pytest.warns(RuntimeWarning, match="viscosity=0.5 is outside the training"):
        surrogate.sample(torch.zeros(1, 1, 16, 16), {"viscosity": 0.5})


def test_missing_condition_is_named(trained):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    with pytest.raises(KeyError, match="viscosity"):
        surrogate.sample(torch.zeros(1, 1, 16, 16), {"nu": 0.01})


def test_condition_on_training_bound_does_not_warn(trained):
    import warnings

    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    low, high = surrogate.training_range("viscosity")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # one unit in the last place outside the stored bounds, as from rounding
        for value in (np.nextafter(low, -np.inf), np.nextafter(high, np.inf)):
            surrogate.sample(torch.zeros(1, 1, 16, 16), {"viscosity": float(value)})


@pytest.mark.parametrize(
    ("inputs", "conditions", "n_samples", "message"),
    [
        (torch.zeros(1, 1, 8, 8), {"viscosity": 0.015}, 1, r"training grid"),
        (torch.zeros(1, 3, 16, 16), {"viscosity": 0.015}, 1, r"\(1, 3, 16, 16\)"),
        (torch.full((1, 1, 16, 16), float("nan")), {"viscosity": 0.015}, 1, "NaN"),
        (torch.zeros(1, 1, 16, 16), {"viscosity": float("nan")}, 1, "NaN"),
        (torch.zeros(1, 1, 16, 16), {"viscosity": 0.015}, 0, "n_samples=0"),
    ],
)
def test_sample_rejects_bad_input(trained, inputs, conditions, n_samples, message):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    with pytest.raises(ValueError, match=message):
        surrogate.sample(inputs, conditions, n_samples=n_samples)


def test_unknown_condition_is_named(trained):
    root, _ = trained
    surrogate = Surrogate.load(root / "cgan")
    with pytest.raises(KeyError, match="unknown names \\['viscosty'\\]"):
        surrogate.sample(
            torch.zeros(1, 1, 16, 16), {"viscosity": 0.015, "viscosty": 0.01}
        )
