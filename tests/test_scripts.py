"""Hydra entry points: config composition and tiny end-to-end runs as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datafiles import write_pypde_file
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "model.generator.base_channels=4",
    "model.generator.channel_multipliers=[1,2]",
    "model.discriminator.base_channels=4",
    "model.discriminator.n_layers=2",
    "training.max_steps=3",
    "training.batch_size=4",
    "training.time_budget_s=null",
    "evaluation.n_rollout_steps=2",
    "evaluation.n_ensemble=2",
    "evaluation.max_initial_states=2",
]


def run_script(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.parametrize("data", ["navier_stokes", "pypde_gray_scott"])
def test_train_config_composes(data):
    with initialize_config_dir(str(ROOT / "configs"), version_base=None):
        config = compose("train", overrides=[f"data={data}"])
    assert config.data.layout.fields
    assert config.training.adversarial_loss == "hinge"
    assert config.baseline.training_overrides.adversarial_weight == 0.0


def test_train_script_makes_data_and_evaluates(tmp_path):
    data_file = tmp_path / "ns.h5"
    result = run_script(
        "train.py",
        *TINY,
        f"data.layout.files=[{data_file}]",
        "simulate.n_trajectories=6",
        "simulate.n_grid=16",
        "simulate.n_snapshots=5",
        "simulate.spinup_time=0.5",
        "simulate.snapshot_interval=0.1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert data_file.is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["speed"]["solver_s"] > 0
    assert "one_step_rel_l2_baseline" in metrics["headline"]
    assert "headline figures" in result.stdout


def test_train_script_reads_pypde_files(tmp_path):
    for i, (feed, kill) in enumerate([(0.04, 0.06), (0.03, 0.062), (0.035, 0.061)]):
        write_pypde_file(tmp_path / f"run{i}.h5", feed, kill, seed=i)
    result = run_script(
        "train.py",
        *TINY,
        "data=pypde_gray_scott",
        f"data.layout.files=[{tmp_path}/run*.h5]",
        "split.fractions=[0.34,0.33,0.33]",
        "evaluation.solver=null",
        "baseline.enabled=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["one_step_rel_l2"]) == {"cgan", "persistence"}
    assert "speed" not in metrics


def test_missing_data_without_generation_fails_clearly(tmp_path):
    result = run_script(
        "train.py",
        *TINY,
        f"data.layout.files=[{tmp_path}/absent.h5]",
        "data.make_if_missing=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "absent.h5" in result.stderr
    assert "no file matches" in result.stderr


def test_data_benchmark_writes_its_table(tmp_path):
    markdown = tmp_path / "data_loading.md"
    command = [sys.executable, str(ROOT / "scripts" / "benchmark_data.py")]
    command += ["--workdir", str(tmp_path / "files"), "--n-samples", "48"]
    command += ["--grid", "16", "--packed", "8", "--repeats", "1"]
    command += ["--workers", "0", "--naive-samples", "8", "--ram-budget-mb", "1"]
    command += ["--markdown", str(markdown)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = markdown.read_text()
    assert "| chunked | " in text
    assert "| gzip-packed | " in text
    assert "| 1 MB | " in text
    assert not (tmp_path / "files").exists()
