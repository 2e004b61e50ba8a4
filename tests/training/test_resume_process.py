"""Exact resume across processes: N steps, a new process to 2N, versus 2N at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from surrogates.training import load_checkpoint

JOB = Path(__file__).with_name("training_job.py")
N_STEPS = 5  # the resume point, mid-epoch: an epoch has 7 batches of 4 samples
BASE = {
    "batch_size": 4,
    "log_every": 1,
    "checkpoint_every": 1000,
    "time_budget_s": None,
    "health_batch_size": 4,
    "health_n_draws": 2,
}
VARIANTS = {
    "defaults": {},
    # worker processes, new batches per discriminator step, and every term that
    # draws random numbers (interpolation weights, ensemble noise)
    "workers_wgan_physics": {
        "num_workers": 2,
        "adversarial_loss": "wgan",
        "n_discriminator_steps": 2,
        "r1_weight": 0.1,
        "r1_interval": 2,
        "crps_weight": 0.5,
        "spectral_weight": 0.1,
        "mean_conservation_weight": 0.1,
        "image_every": 4,
        "health_warmup_steps": 0,
    },
}


def run_jobs(directory: Path, data_file: Path, runs: list[dict]) -> None:
    jobs = directory / f"jobs_{len(list(directory.glob('jobs_*')))}.json"
    jobs.write_text(json.dumps({"data_file": str(data_file), "runs": runs}))
    result = subprocess.run(
        [sys.executable, str(JOB), str(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def assert_identical(expected, actual, where: str) -> None:
    """Compare nested dicts, lists, tensors and numbers exactly."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_identical(expected[key], actual[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            assert_identical(a, b, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        # exact; NaN marks an empty cached Gaussian in the Python RNG state
        torch.testing.assert_close(
            actual, expected, rtol=0, atol=0, equal_nan=True, msg=where
        )
    else:
        assert actual == expected, where


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resume_in_new_process_is_exact(variant, canonical_file, tmp_path):
    training = {**BASE, **VARIANTS[variant]}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    first = [
        {"run_dir": str(straight), "training": training | {"max_steps": 2 * N_STEPS}},
        {"run_dir": str(resumed), "training": training | {"max_steps": N_STEPS}},
    ]
    for run in first:
        run["resume"] = False
    run_jobs(tmp_path, canonical_file, first)
    middle = load_checkpoint(resumed)
    assert middle.meta["step"] == N_STEPS
    assert middle.state["counters"]["batch_in_epoch"] > 0

    second = {"run_dir": str(resumed), "resume": True}
    second["training"] = training | {"max_steps": 2 * N_STEPS}
    run_jobs(tmp_path, canonical_file, [second])

    expected, actual = load_checkpoint(straight), load_checkpoint(resumed)
    assert actual.meta["step"] == 2 * N_STEPS
    assert_identical(expected.weights, actual.weights, "weights")
    for key in ("optimizer_g", "optimizer_d", "rng", "counters", "health"):
        assert_identical(expected.state[key], actual.state[key], key)
    assert actual.meta["last_scalars"] == expected.meta["last_scalars"]
    scalars = "logs/scalars.csv"
    assert (resumed / scalars).read_text() == (straight / scalars).read_text()
