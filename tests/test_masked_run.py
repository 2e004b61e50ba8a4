"""A tiny train -> evaluate -> emulate run on a domain with masked points."""

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

TRAINING = {
    "max_steps": 4,
    "batch_size": 4,
    "log_every": 1,
    "crps_weight": 1.0,
    "n_ensemble_train": 2,
}


def land_mask() -> np.ndarray:
    valid = np.ones((16, 16), dtype=bool)
    valid[4:9, 6:12] = False
    return valid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("masked")
    path = root / "ocean.h5"
    valid = land_mask()
    values = write_canonical_file(path, n_trajectories=8, n_times=8)
    values[..., ~valid] = np.nan  # land, as ocean models often write it
    write_canonical_file(path, n_trajectories=8, n_times=8, vorticity=values)
    with h5py.File(path, "r+") as handle:
        handle["ocean"] = valid.astype(np.uint8)
    layout = {**canonical_layout(path), "mask": {"path": "ocean", "axes": ["y", "x"]}}
    train_surrogate(
        layout=layout,
        task=TASK,
        model=TINY_MODEL,
        training=TRAINING,
        run_dir=root / "cgan",
    )

    def advance(states, conditions, duration):
        return states + 0.0 * duration  # a stand-in solver: persistence

    metrics = evaluate(
        root / "cgan", n_rollout_steps=2, n_ensemble=2, solver_advance=advance
    )
    return root, values, metrics


def test_masked_training_losses_are_finite(trained):
    root, _, _ = trained
    lines = (root / "cgan" / "logs" / "scalars.csv").read_text().splitlines()
    last = {}
    for line in lines[1:]:
        _, name, value = line.split(",")
        last[name] = float(value)
    for name in ("train/loss_g", "train/loss_crps", "train/ensemble_spread"):
        assert math.isfinite(last[name]), name


def test_masked_metrics_are_finite(trained):
    root, _, metrics = trained
    stored = json.loads((root / "cgan" / "metrics.json").read_text())
    assert stored["setup"]["mask"]["n_valid"] == int(land_mask().sum())
    for name, value in metrics["one_step_rel_l2"].items():
        assert math.isfinite(value), name
    for value in metrics["rollout"]["rel_l2"]["cgan"]:
        assert math.isfinite(value)


def test_surrogate_outputs_nan_exactly_outside_the_domain(trained):
    root, values, _ = trained
    surrogate = Surrogate.load(root / "cgan", device="cpu")
    valid = torch.from_numpy(land_mask())
    assert torch.equal(surrogate.mask, valid)
    state = torch.from_numpy(values[0, :1])  # NaN on land, as stored
    rollout = surrogate.rollout_tensor(state[None], [[0.015]], n_steps=3, n_samples=2)
    assert rollout.shape == (2, 1, 4, 1, 16, 16)
    assert torch.isnan(rollout[..., ~valid]).all()
    assert torch.isfinite(rollout[..., valid]).all()
    sample = surrogate.sample(state[None], [[0.015]])
    assert torch.isnan(sample[..., ~valid]).all()
    assert torch.isfinite(sample[..., valid]).all()


def test_masked_rollout_written_as_canonical_hdf5(trained, tmp_path):
    root, values, _ = trained
    surrogate = Surrogate.load(root / "cgan", device="cpu")
    state = torch.from_numpy(values[0, :1])  # (C, H, W), NaN on land
    rollout = surrogate.rollout(state, {"viscosity": 0.015}, n_steps=2, n_samples=2)
    path = surrogate.write_hdf5(rollout, tmp_path / "surrogate.h5")
    valid = land_mask()
    with h5py.File(path, "r") as handle:
        written = handle["fields/vorticity"][...]
        stored_mask = handle["mask"][...].astype(bool)
    assert np.array_equal(stored_mask, valid)
    assert np.isnan(written[..., ~valid]).all()
    assert np.isfinite(written[..., valid]).all()


def test_surrogate_rejects_nan_inside_the_domain(trained):
    root, values, _ = trained
    surrogate = Surrogate.load(root / "cgan", device="cpu")
    state = torch.from_numpy(values[0, :1].copy())
    state[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf at valid points"):
        surrogate.sample(state[None], [[0.015]])
