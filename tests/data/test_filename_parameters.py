"""Parameters parsed from file names with ``filename_regex``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from datafiles import pdebench_name, write_pdebench_file, write_snapshot_files

from surrogates.data import DataFileError, HDF5Source, LayoutError, layout_from_dict
from surrogates.data.metadata import value_from_filename
from surrogates.data.preflight import run_preflight

ROOT = Path(__file__).resolve().parents[2]
MACH = "_M([0-9.eE+-]+)_"


def pdebench_layout(*files) -> dict:
    """Return the layout of configs/data/pdebench_example.yaml reading ``files``."""
    path = ROOT / "configs" / "data" / "pdebench_example.yaml"
    config = yaml.safe_load(path.read_text())
    return {**config["layout"], "files": [str(f) for f in files]}


def with_mach_regex(layout: dict, regex) -> dict:
    """Return ``layout`` with ``M`` alone as parameter, read with ``regex``."""
    return {**layout, "parameters": {"M": {"filename_regex": regex}}}


def open_file_count() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


@pytest.fixture
def two_mach_files(tmp_path) -> list[Path]:
    paths = [tmp_path / pdebench_name(mach) for mach in (1.0, 0.1)]
    for seed, path in enumerate(paths):
        write_pdebench_file(path, n_samples=2, n_grid=8, seed=seed)
    return paths


# values


def test_values_from_two_file_names(two_mach_files, tmp_path):
    pattern = tmp_path / "2D_CFD_M*_Eta0.01_Zeta0.01_Train.hdf5"
    source = HDF5Source(layout_from_dict(pdebench_layout(pattern)))
    # Files are read in sorted name order, so M0.1 comes before M1.0.
    assert [path.name for path in source.files] == [
        pdebench_name(0.1),
        pdebench_name(1.0),
    ]
    np.testing.assert_allclose(source.parameters["M"], [0.1, 0.1, 1.0, 1.0], rtol=0)
    np.testing.assert_allclose(source.parameters["Eta"], [0.01] * 4, rtol=0)
    np.testing.assert_allclose(source.parameters["Zeta"], [0.01] * 4, rtol=0)
    assert source.parameter_units["M"] == ""
    source.close()


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("run_M0.1_.h5", 0.1),
        ("run_M-2_.h5", -2.0),
        ("run_M.5_.h5", 0.5),
        ("run_M1._.h5", 1.0),
        ("run_M1e-3_.h5", 1e-3),
        ("run_M2.5E+04_.h5", 2.5e4),
    ],
)
def test_number_formats_parse(filename, expected):
    layout = layout_from_dict(with_mach_regex(pdebench_layout("a.h5"), MACH))
    spec = layout.parameters["M"]
    value = value_from_filename(Path("/data") / filename, spec, "M")
    assert value == pytest.approx(expected, rel=1e-15, abs=0)


def test_directory_names_are_not_searched(tmp_path):
    directory = tmp_path / "sweep_M9.0_"
    directory.mkdir()
    path = directory / "run.hdf5"
    write_pdebench_file(path, n_samples=1, n_grid=8)
    layout = with_mach_regex(pdebench_layout(path), MACH)
    with pytest.raises(DataFileError) as error:
        HDF5Source(layout_from_dict(layout))
    assert "does not match the file name 'run.hdf5'" in str(error.value)


def test_symlink_name_is_matched(tmp_path):
    write_pdebench_file(tmp_path / "store.hdf5", n_samples=1, n_grid=8)
    link = tmp_path / pdebench_name(0.3)
    link.symlink_to(tmp_path / "store.hdf5")
    source = HDF5Source(layout_from_dict(pdebench_layout(link)))
    np.testing.assert_allclose(source.parameters["M"], [0.3], rtol=0)
    source.close()


def test_layout_round_trip_keeps_regex():
    layout = layout_from_dict(pdebench_layout("a.h5"))
    assert layout.parameters["M"].filename_regex == MACH
    assert layout.to_dict()["parameters"]["M"] == {"filename_regex": MACH}
    assert layout_from_dict(layout.to_dict()) == layout


# errors found when the layout is loaded


@pytest.mark.parametrize(
    ("regex", "phrases"),
    [
        ("_M([0-9.]+_", ["is not a valid regular expression", "missing )"]),
        ("_M[0-9.]+_", ["has 0 capture groups", "expected exactly 1"]),
        ("_(M)([0-9.]+)_", ["has 2 capture groups", "non-capturing (?:...)"]),
        (0.1, ["filename_regex=0.1 is not a string", "quote"]),
    ],
)
def test_bad_regex_rejected_at_load(regex, phrases):
    layout = with_mach_regex(pdebench_layout("unused.h5"), regex)
    with pytest.raises(LayoutError) as error:
        layout_from_dict(layout)
    message = str(error.value)
    assert "parameter 'M'" in message
    assert "e.g. '_M([0-9.eE+-]+)_'" in message
    for phrase in phrases:
        assert phrase in message


def test_regex_with_second_source_rejected():
    layout = pdebench_layout("unused.h5")
    layout["parameters"] = {"M": {"filename_regex": MACH, "value": 0.1}}
    with pytest.raises(LayoutError, match=r"exactly one of .* 'filename_regex', got 2"):
        layout_from_dict(layout)


# errors found when the files are scanned


@pytest.mark.parametrize(
    ("regex", "phrases"),
    [
        ("_Mach([0-9.]+)_", ["does not match the file name", "fix the regular"]),
        ("_M(.*)_", ["captures '0.1_Eta0.01_Zeta0.01'", "is not a number"]),
        ("_Eta([a-z]*)", ["captures ''", "is not a number"]),
        ("_M(x)?", ["captures nothing", "is not a number"]),
    ],
)
def test_bad_regex_names_file(tmp_path, regex, phrases):
    path = tmp_path / pdebench_name(0.1)
    write_pdebench_file(path, n_samples=1, n_grid=8)
    layout = layout_from_dict(with_mach_regex(pdebench_layout(path), regex))
    with pytest.raises(DataFileError) as error:
        HDF5Source(layout)
    message = str(error.value)
    assert str(path) in message
    assert "parameter 'M'" in message
    assert f"filename_regex {regex!r}" in message
    for phrase in phrases:
        assert phrase in message
    assert open_file_count() == 0


def test_trailing_dot_capture_explains_fix(tmp_path):
    path = tmp_path / "ReacDiff_Nu0.5_Rho1.0.hdf5"
    write_pdebench_file(path, n_samples=1, n_grid=8)
    layout = with_mach_regex(pdebench_layout(path), "Rho([0-9.]+)")
    with pytest.raises(DataFileError) as error:
        HDF5Source(layout_from_dict(layout))
    message = str(error.value)
    assert "captures '1.0.'" in message
    assert "'\\.hdf5'" in message


def test_overflowing_number_is_not_finite(tmp_path):
    path = tmp_path / "run_M1e999_.hdf5"
    write_pdebench_file(path, n_samples=1, n_grid=8)
    layout = with_mach_regex(pdebench_layout(path), MACH)
    with pytest.raises(DataFileError, match="NaN or inf"):
        HDF5Source(layout_from_dict(layout))


# files joined along time


def write_named_snapshots(directory: Path, names: list[str]) -> None:
    """Write one snapshot per file and rename the files to ``names`` in order."""
    directory.mkdir()
    write_snapshot_files(directory, [0.1 * i for i in range(len(names))])
    for i, name in enumerate(names):
        (directory / f"snap_{i:04d}.h5").rename(directory / name)


def snapshot_layout(*patterns) -> dict:
    return {
        "join": "time",
        "files": [str(p) for p in patterns],
        "space": ["y", "x"],
        "fields": {"rho": {"path": "rho", "axes": ["y", "x"]}},
        "parameters": {"viscosity": {"filename_regex": r"_nu([0-9.eE+-]+)_"}},
        "grid": {"time": {"attribute": "time"}},
    }


def test_joined_in_time_files_agree(tmp_path):
    write_named_snapshots(tmp_path / "a", [f"run_nu0.01_t{i}.h5" for i in range(3)])
    write_named_snapshots(tmp_path / "b", [f"run_nu0.02_t{i}.h5" for i in range(3)])
    layout = snapshot_layout(tmp_path / "a/*.h5", tmp_path / "b/*.h5")
    source = HDF5Source(layout_from_dict(layout))
    assert source.n_times == 3
    np.testing.assert_allclose(source.parameters["viscosity"], [0.01, 0.02], rtol=0)
    source.close()


def test_joined_in_time_files_disagree(tmp_path):
    names = ["run_nu0.01_t0.h5", "run_nu0.01_t1.h5", "run_nu0.03_t2.h5"]
    write_named_snapshots(tmp_path / "a", names)
    layout = snapshot_layout(tmp_path / "a/*.h5")
    with pytest.raises(DataFileError) as error:
        HDF5Source(layout_from_dict(layout))
    message = str(error.value)
    assert "parameter 'viscosity'" in message
    assert "run_nu0.03_t2.h5" in message
    assert "run_nu0.01_t0.h5" in message
    assert open_file_count() == 0


# preflight


def test_preflight_reports_filename_parameter(two_mach_files):
    report, problems = run_preflight(pdebench_layout(*two_mach_files))
    assert problems == []
    assert report["layout"]["parameters"]["M"] == {"filename_regex": MACH}
    assert report["parameters"]["M"] == {
        "min": 0.1,
        "max": 1.0,
        "n_distinct": 2,
        "units": "",
    }


def test_preflight_script_prints_filename_parameter(two_mach_files, tmp_path):
    overrides = [
        "data=pdebench_example",
        f"data.layout.files=[{tmp_path / '2D_CFD_M*_Train.hdf5'}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "preflight.py"), *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "  M: 2 distinct values in [0.1, 1] (no units)" in lines
    assert "  Eta: 1 distinct values in [0.01, 0.01] (no units)" in lines
