"""Layout masks: points outside the domain, NaN allowed there, excluded everywhere."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from surrogates.data import (
    DataFileError,
    HDF5Source,
    LayoutError,
    NonFiniteValueError,
    StepDataset,
    StepTask,
    fit_normalizer,
    layout_from_dict,
    make_loader,
)
from surrogates.data.masking import decode_mask, encode_mask, fill_masked, select_valid
from surrogates.data.preflight import run_preflight

ROOT = Path(__file__).resolve().parents[2]
N_TRAJECTORIES, N_TIMES, N_Y, N_X = 4, 6, 12, 16


def land() -> np.ndarray:
    """Masked points ``(y, x)``: a block of land and one isolated point."""
    points = np.zeros((N_Y, N_X), dtype=bool)
    points[3:7, 5:11] = True
    points[0, 0] = True
    return points


def write_masked_file(
    path, *, land_value=np.nan, mask_form="ocean", nan_at=None
) -> np.ndarray:
    """Write a field ``u`` that is ``land_value`` on land; return its values.

    ``mask_form`` stores the mask as ``ocean`` (1 at valid points), ``land`` (1 at
    masked points) or ``none``. The mask dataset is stored in (x, y) order.
    """
    rng = np.random.default_rng(3)
    values = rng.standard_normal((N_TRAJECTORIES, N_TIMES, N_Y, N_X)) * 2.0 + 5.0
    values = values.astype(np.float32)
    values[:, :, land()] = land_value
    if nan_at is not None:
        values[nan_at] = np.nan
    with h5py.File(path, "w") as handle:
        handle.create_dataset("u", data=values, chunks=(1, 1, N_Y, N_X))
        handle["nu"] = np.linspace(0.1, 0.4, N_TRAJECTORIES)
        if mask_form == "ocean":
            handle["ocean"] = (~land()).T.astype(np.int8)
        elif mask_form == "land":
            handle["land"] = land().T.astype(np.float64)
    return values


def masked_layout(path, mask) -> dict:
    return {
        "name": "basin",
        "files": [str(path)],
        "space": ["y", "x"],
        "fields": {"u": {"path": "u", "axes": ["trajectory", "time", "y", "x"]}},
        "parameters": {"nu": {"path": "nu"}},
        "mask": mask,
    }


OCEAN = {"path": "ocean", "axes": ["x", "y"]}
LAND = {"path": "land", "axes": ["x", "y"], "masked_where": "nonzero"}
NAN_IN = {"nan_in": "u"}


@pytest.fixture
def ocean_file(tmp_path):
    path = tmp_path / "basin.h5"
    values = write_masked_file(path)
    return path, values


def make_dataset(path, mask=OCEAN, n_steps_output=1) -> StepDataset:
    source = HDF5Source(layout_from_dict(masked_layout(path, mask)))
    task = StepTask(("u",), ("u",), ("nu",), n_steps_output=n_steps_output)
    normalizer = fit_normalizer(source, [0, 1, 2], ["u"], ["nu"])
    return StepDataset(source, [0, 1, 2, 3], task, normalizer)


# mask sources


@pytest.mark.parametrize(
    ("mask_form", "mask"), [("ocean", OCEAN), ("land", LAND), ("none", NAN_IN)]
)
def test_mask_read_in_model_order(tmp_path, mask_form, mask):
    write_masked_file(tmp_path / "basin.h5", mask_form=mask_form)
    source = HDF5Source(layout_from_dict(masked_layout(tmp_path / "basin.h5", mask)))
    assert source.mask.dtype == np.bool_
    assert source.mask.shape == (N_Y, N_X)
    np.testing.assert_array_equal(source.mask, ~land())


def test_mask_from_inf_values(tmp_path):
    write_masked_file(tmp_path / "basin.h5", land_value=np.inf, mask_form="none")
    source = HDF5Source(layout_from_dict(masked_layout(tmp_path / "basin.h5", NAN_IN)))
    np.testing.assert_array_equal(source.mask, ~land())


def test_mask_bool_dataset(tmp_path):
    write_masked_file(tmp_path / "basin.h5", mask_form="none")
    with h5py.File(tmp_path / "basin.h5", "r+") as handle:
        handle["ocean"] = ~land().T
    source = HDF5Source(layout_from_dict(masked_layout(tmp_path / "basin.h5", OCEAN)))
    np.testing.assert_array_equal(source.mask, ~land())


def test_no_mask_is_none(ocean_file):
    path, _ = ocean_file
    layout = masked_layout(path, None)
    del layout["mask"]
    source = HDF5Source(layout_from_dict(layout))
    assert source.mask is None
    assert source.describe()["mask"] is None


def test_describe_counts_points(ocean_file):
    path, _ = ocean_file
    source = HDF5Source(layout_from_dict(masked_layout(path, OCEAN)))
    described = source.describe()["mask"]
    assert described["n_masked"] == int(land().sum())
    assert described["n_valid"] == N_Y * N_X - int(land().sum())
    assert described["n_points"] == N_Y * N_X
    assert "ocean" in described["source"]


def test_layout_round_trip_keeps_mask(ocean_file):
    path, _ = ocean_file
    layout = layout_from_dict(masked_layout(path, LAND))
    again = layout_from_dict(layout.to_dict())
    assert again.mask == layout.mask
    assert again.mask.masked_where == "nonzero"


def test_masked_where_defaults_to_zero(ocean_file):
    path, _ = ocean_file
    assert layout_from_dict(masked_layout(path, OCEAN)).mask.masked_where == "zero"


# reading and batches


def test_read_returns_nan_at_masked_points(ocean_file):
    path, _ = ocean_file
    source = HDF5Source(layout_from_dict(masked_layout(path, OCEAN)))
    values = source.read("u", 1, slice(0, 3))
    assert np.isnan(values[:, :, land()]).all()
    assert np.isfinite(values[:, :, ~land()]).all()


def test_batches_are_zero_at_masked_points(ocean_file):
    path, _ = ocean_file
    dataset = make_dataset(path, n_steps_output=2)
    batch = dataset.read_batch([0, 3, 7])
    masked = torch.from_numpy(land())
    for key in ("inputs", "targets", "target_sequence"):
        values = batch[key]
        assert torch.isfinite(values).all(), key
        assert torch.equal(values[..., masked], torch.zeros_like(values[..., masked]))


def test_batches_zeroed_by_either_path(ocean_file):
    path, _ = ocean_file
    dataset = make_dataset(path, n_steps_output=2)
    by_index = dataset.read_batch([1, 4, 9])
    assert dataset._inputs.masked_points is not None
    dataset._inputs.masked_points = None  # as for a mostly masked grid
    by_pass = dataset.read_batch([1, 4, 9])
    for key, value in by_index.items():
        assert torch.equal(by_pass[key], value), key


def test_batches_normalize_valid_points(ocean_file):
    path, values = ocean_file
    dataset = make_dataset(path)
    batch = dataset[2]
    trajectory, time = dataset.index[2]
    mean = np.float32(dataset.normalizer.field_mean["u"][0])
    std = np.float32(dataset.normalizer.field_std["u"][0])
    expected = (values[trajectory, time + 1] - mean) / std
    valid = ~land()
    np.testing.assert_allclose(
        batch["targets"][0].numpy()[valid], expected[valid], rtol=1e-6, atol=1e-6
    )


def test_dataset_exposes_mask_tensor(ocean_file):
    path, _ = ocean_file
    dataset = make_dataset(path)
    assert dataset.mask.dtype == torch.bool
    assert torch.equal(dataset.mask, torch.from_numpy(~land()))


def test_nan_outside_mask_raises(tmp_path):
    path = tmp_path / "basin.h5"
    write_masked_file(path, nan_at=(3, 4, 9, 2))
    dataset = make_dataset(path)  # fits on trajectories 0 to 2
    sample = next(i for i, (tr, t) in enumerate(dataset.index) if (tr, t) == (3, 3))
    with pytest.raises(NonFiniteValueError, match="valid") as raised:
        dataset.read_batch([0, sample])
    assert "'y': 9, 'x': 2" in str(raised.value)


def test_source_read_raises_outside_mask(tmp_path):
    path = tmp_path / "basin.h5"
    write_masked_file(path, nan_at=(2, 0, 11, 15))
    source = HDF5Source(layout_from_dict(masked_layout(path, OCEAN)))
    with pytest.raises(NonFiniteValueError, match="time index 0"):
        source.read("u", 2, slice(None))


def test_loader_workers_match_with_mask(ocean_file):
    path, _ = ocean_file
    dataset = make_dataset(path, n_steps_output=2)
    serial = list(make_loader(dataset, batch_size=5, num_workers=0))
    parallel = list(make_loader(dataset, batch_size=5, num_workers=2))
    assert len(serial) == len(parallel)
    for one, other in zip(serial, parallel, strict=True):
        for key in one:
            assert torch.equal(one[key], other[key]), key


# normalization


def test_normalizer_ignores_masked_values(tmp_path):
    path = tmp_path / "basin.h5"
    values = write_masked_file(path, land_value=1e30)
    source = HDF5Source(layout_from_dict(masked_layout(path, OCEAN)))
    normalizer = fit_normalizer(source, [0, 2], ["u"], [])
    valid = values[[0, 2]][:, :, ~land()].astype(np.float64)
    np.testing.assert_allclose(
        normalizer.field_mean["u"], [valid.mean()], rtol=1e-12, atol=0
    )
    np.testing.assert_allclose(
        normalizer.field_std["u"], [valid.std(ddof=1)], rtol=1e-12, atol=0
    )


# layout and file errors


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({"path": "ocean", "axes": ["x"]}, "each of the spatial axes"),
        ({"path": "ocean", "axes": ["x", "z"]}, "each of the spatial axes"),
        ({"path": "ocean", "axes": ["x", "x"]}, "each of the spatial axes"),
        ({"path": "ocean"}, "needs 'axes'"),
        ({"path": "ocean", "axes": ["x", "y"], "where": 0}, "unknown keys"),
        ({"path": "ocean", "axes": ["x", "y"], "nan_in": "u"}, "sets both"),
        ({}, "sets neither"),
        ({"path": "ocean", "axes": ["x", "y"], "masked_where": "one"}, "not one of"),
        ({"nan_in": "v"}, "not a field"),
        ({"nan_in": "u", "axes": ["x", "y"]}, "'axes' belongs"),
        ({"nan_in": "u", "masked_where": "zero"}, "'masked_where' belongs"),
        ("ocean", "not a mapping"),
    ],
)
def test_invalid_mask_config_raises(ocean_file, mask, message):
    path, _ = ocean_file
    with pytest.raises(LayoutError, match=message):
        layout_from_dict(masked_layout(path, mask))


def test_missing_mask_dataset_raises(ocean_file):
    path, _ = ocean_file
    mask = {"path": "sea", "axes": ["x", "y"]}
    with pytest.raises(DataFileError, match="'sea' not found"):
        HDF5Source(layout_from_dict(masked_layout(path, mask)))


def test_mask_shape_mismatch_raises(ocean_file):
    path, _ = ocean_file
    mask = {"path": "ocean", "axes": ["y", "x"]}
    with pytest.raises(DataFileError, match=r"need shape \(12, 16\)") as raised:
        HDF5Source(layout_from_dict(masked_layout(path, mask)))
    assert str(path) in str(raised.value)


def test_mask_without_valid_point_raises(ocean_file):
    path, _ = ocean_file
    mask = {"path": "ocean", "axes": ["x", "y"], "masked_where": "nonzero"}
    with h5py.File(path, "r+") as handle:
        handle["ocean"][...] = 1
    with pytest.raises(DataFileError, match="masked_where"):
        HDF5Source(layout_from_dict(masked_layout(path, mask)))


def test_nan_mask_without_valid_point_raises(tmp_path):
    path = tmp_path / "basin.h5"
    write_masked_file(path, mask_form="none")
    with h5py.File(path, "r+") as handle:
        handle["u"][0, 0] = np.nan
    with pytest.raises(DataFileError, match="all 192 points as masked"):
        HDF5Source(layout_from_dict(masked_layout(path, NAN_IN)))


def test_mask_dataset_with_nan_raises(ocean_file):
    path, _ = ocean_file
    with h5py.File(path, "r+") as handle:
        handle["bad"] = np.full((N_X, N_Y), np.nan)
    mask = {"path": "bad", "axes": ["x", "y"]}
    with pytest.raises(DataFileError, match="NaN or inf"):
        HDF5Source(layout_from_dict(masked_layout(path, mask)))


# preflight


def load_preflight_script():
    spec = importlib.util.spec_from_file_location(
        "preflight_script", ROOT / "scripts" / "preflight.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preflight_reports_mask_and_masked_nan(ocean_file):
    path, values = ocean_file
    report, problems = run_preflight(masked_layout(path, OCEAN))
    assert problems == []
    statistics = report["fields"]["u"]["statistics"]
    n_masked = int(land().sum())
    assert statistics["n_nan_masked"] == [N_TRAJECTORIES * N_TIMES * n_masked]
    assert statistics["n_nan"] == [0]
    valid = values[:, :, ~land()].astype(np.float64)
    np.testing.assert_allclose(statistics["mean"], [valid.mean()], rtol=1e-12)
    assert report["mask"]["n_valid"] == N_Y * N_X - n_masked


def test_preflight_flags_nan_outside_mask(tmp_path):
    path = tmp_path / "basin.h5"
    write_masked_file(path, nan_at=(3, 5, 0, 15))
    _, problems = run_preflight(masked_layout(path, OCEAN))
    assert len(problems) == 1
    assert "1 NaN and 0 inf values at valid points" in problems[0]
    assert "{'y': 0, 'x': 15}" in problems[0]


def test_preflight_script_prints_mask(ocean_file):
    path, _ = ocean_file
    report, problems = run_preflight(masked_layout(path, OCEAN))
    lines = load_preflight_script().format_report(report, problems)
    n_masked = int(land().sum())
    assert (
        f"mask: dataset 'ocean', masked where zero; {N_Y * N_X - n_masked} of "
        f"{N_Y * N_X} points valid, {n_masked} masked"
    ) in lines
    masked_nan = N_TRAJECTORIES * N_TIMES * n_masked
    assert f"    at masked points (ignored): NaN {masked_nan}  inf 0" in lines
    assert "no problems found" in lines


def test_mask_encoding_round_trips():
    mask = np.random.default_rng(0).random((7, 13)) > 0.3
    encoded = encode_mask(mask)
    assert json.loads(json.dumps(encoded)) == encoded
    np.testing.assert_array_equal(decode_mask(encoded), mask)
    assert encode_mask(None) is None
    assert decode_mask(None) is None


def test_fill_masked_replaces_nan_by_selection():
    mask = torch.tensor([[True, False], [False, True]])
    fields = torch.tensor([[[1.0, float("nan")], [float("inf"), 4.0]]])
    filled = fill_masked(fields, mask)
    assert torch.equal(filled, torch.tensor([[[1.0, 0.0], [0.0, 4.0]]]))
    assert torch.equal(select_valid(fields, mask), torch.tensor([[1.0, 4.0]]))
