"""Preflight check: report contents, streamed statistics, located NaN, script exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from datafiles import canonical_layout, write_canonical_file, write_snapshot_files

from surrogates.data.preflight import run_preflight

ROOT = Path(__file__).resolve().parents[2]


def write_compressed_file(path) -> np.ndarray:
    values = np.random.default_rng(5).standard_normal((3, 4, 8, 8, 2)) * 2 + 1
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset(
            "u", data=values.astype(">f8"), chunks=(1, 1, 8, 8, 2), compression="gzip"
        )
        dataset.attrs["units"] = b"m/s"
        handle["nu"] = np.array([0.1, 0.2, 0.3])
        handle["t"] = np.array([0.0, 1.0, 2.0, 3.0])
    return values


def vector_layout(path) -> dict:
    return {
        "name": "vectors",
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {
            "u": {"path": "u", "axes": ["trajectory", "time", "y", "x", "component"]}
        },
        "parameters": {"nu": {"path": "nu", "units": "m^2/s"}},
        "grid": {"time": {"path": "t", "units": "s"}, "x": {"bounds": [0, 1]}},
    }


def test_preflight_reports_datasets_and_ranges(tmp_path):
    write_compressed_file(tmp_path / "u.h5")
    report, problems = run_preflight(vector_layout(tmp_path / "u.h5"))
    assert problems == []
    field = report["fields"]["u"]
    assert field["shape"] == [3, 4, 8, 8, 2]
    assert field["dtype"] == ">f8"
    assert field["chunks"] == [1, 1, 8, 8, 2]
    assert field["compression"] == "gzip"
    assert field["units"] == "m/s"
    assert report["parameters"]["nu"] == {
        "min": 0.1,
        "max": 0.3,
        "n_distinct": 3,
        "units": "m^2/s",
    }
    assert report["grid"]["time"]["max"] == 3.0
    assert report["grid"]["x"]["min"] == pytest.approx(1 / 16, rel=1e-12)


@pytest.mark.parametrize("max_block_bytes", [1, 2**30])
def test_preflight_statistics_match_float64(tmp_path, max_block_bytes):
    values = write_compressed_file(tmp_path / "u.h5")
    report, _ = run_preflight(
        vector_layout(tmp_path / "u.h5"), max_block_bytes=max_block_bytes
    )
    statistics = report["fields"]["u"]["statistics"]
    # Statistics are of the float32 values the model reads, summed in float64.
    per_component = values.astype(np.float32).astype(np.float64).reshape(-1, 2)
    np.testing.assert_allclose(statistics["mean"], per_component.mean(0), rtol=1e-12)
    np.testing.assert_allclose(statistics["std"], per_component.std(0), rtol=1e-12)
    np.testing.assert_allclose(statistics["min"], per_component.min(0), rtol=0)
    np.testing.assert_allclose(statistics["max"], per_component.max(0), rtol=0)
    assert statistics["count"] == [3 * 4 * 64] * 2


def write_nan_file(path) -> None:
    values = write_canonical_file(path, n_trajectories=3, n_times=4)
    values[1, 2, 3, 5] = np.nan
    values[2, 0, 0, 0] = -np.inf
    values[2, 3, 1, 1] = np.nan
    write_canonical_file(path, n_trajectories=3, n_times=4, vorticity=values)


def test_preflight_counts_and_locates_nan(tmp_path):
    write_nan_file(tmp_path / "nan.h5")
    report, problems = run_preflight(
        canonical_layout(tmp_path / "nan.h5"), max_offenders=2
    )
    statistics = report["fields"]["vorticity"]["statistics"]
    assert statistics["n_nan"] == [2]
    assert statistics["n_inf"] == [1]
    assert len(statistics["offenders"]) == 2
    first = statistics["offenders"][0]
    assert (first["trajectory"], first["time"], first["index"]) == (
        1,
        2,
        {"y": 3, "x": 5},
    )
    assert len(problems) == 1
    assert "2 NaN and 1 inf" in problems[0]
    assert "'fields/vorticity'" in problems[0]
    assert np.isfinite(statistics["mean"][0])


def test_preflight_locates_nan_in_joined_files(tmp_path):
    write_snapshot_files(tmp_path, [0.0, 0.2, 0.1])
    with h5py.File(tmp_path / "snap_0001.h5", "r+") as handle:
        handle["rho"][4, 7] = np.inf
    layout = {
        "join": "time",
        "files": [str(tmp_path / "snap_*.h5")],
        "space": ["y", "x"],
        "fields": {"rho": {"path": "rho", "axes": ["y", "x"]}},
        "grid": {"time": {"attribute": "time"}},
    }
    report, problems = run_preflight(layout)
    (offender,) = report["fields"]["rho"]["statistics"]["offenders"]
    assert offender["file"].endswith("snap_0001.h5")
    assert offender["time"] == 2
    assert offender["time_in_file"] == 0
    assert "snap_0001.h5" in problems[0]


def test_preflight_build_error_is_a_problem(canonical_file):
    layout = canonical_layout(canonical_file)
    layout["fields"]["vorticity"]["path"] = "fields/omega"
    report, problems = run_preflight(layout)
    assert list(report) == ["layout"]
    assert len(problems) == 1
    assert "'fields/omega' not found" in problems[0]


def test_preflight_flags_repeated_grid_times(tmp_path):
    path = tmp_path / "waves.h5"
    write_canonical_file(path, n_times=4)
    with h5py.File(path, "r+") as handle:
        handle["grid/time"][...] = [0.0, 1.0, 1.0, 2.0]
    _, problems = run_preflight(canonical_layout(path))
    assert len(problems) == 1
    assert "grid axis 'time'" in problems[0]


def run_preflight_script(tmp_path, data_file) -> subprocess.CompletedProcess:
    overrides = [
        "data=pypde_gray_scott",
        f"data.layout.files=[{data_file}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "preflight.py"), *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_pypde_like_file(path, *, nan_at=None) -> None:
    # The layout of configs/data/pypde_gray_scott.yaml without needing py-pde.
    data = np.random.default_rng(6).random((5, 2, 8, 8))
    if nan_at is not None:
        data[nan_at] = np.nan
    with h5py.File(path, "w") as handle:
        handle["data"] = data
        handle["times"] = 10.0 * np.arange(5)
        handle.attrs["F"] = "0.04"
        handle.attrs["k"] = "0.06"


def test_preflight_script_clean_file(tmp_path):
    write_pypde_like_file(tmp_path / "run.h5")
    result = run_preflight_script(tmp_path, tmp_path / "run.h5")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "layout 'pypde_gray_scott' (join: trajectory)" in lines
    assert "trajectories 1, times 5, space {'x': 8, 'y': 8}" in lines
    assert "  feed: 1 distinct values in [0.04, 0.04] 1/s" in lines
    assert "  time: 5 points in [0, 40] s" in lines
    assert "no problems found" in lines


def test_preflight_script_exits_on_nan(tmp_path):
    write_pypde_like_file(tmp_path / "run.h5", nan_at=(3, 1, 2, 6))
    result = run_preflight_script(tmp_path, tmp_path / "run.h5")
    assert result.returncode == 1
    assert "problems (1):" in result.stdout
    assert "1 NaN and 0 inf" in result.stdout
    assert "time index 3" in result.stdout
    assert "{'x': 2, 'y': 6}" in result.stdout
