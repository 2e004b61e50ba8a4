"""Step samples: trajectory splits, train-only normalization, worker equality."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch
from datafiles import TASK, canonical_layout, write_canonical_file

from surrogates.data import (
    EpochSampler,
    NonFiniteValueError,
    StepTask,
    make_loader,
    split_trajectories,
)
from surrogates.training import prepare_data


def test_split_is_by_trajectory_and_disjoint():
    splits = split_trajectories(20, (0.8, 0.1, 0.1), seed=3)
    members = [set(v) for v in splits.values()]
    assert sum(len(m) for m in members) == 20
    assert set.union(*members) == set(range(20))
    assert len(splits["test"]) == 2


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        split_trajectories(10, (0.8, 0.3, 0.1), seed=0)


def test_samples_hold_step_pairs(canonical_file):
    data = prepare_data(
        canonical_layout(canonical_file),
        {**TASK, "n_steps_input": 2, "step_stride": 2},
        split_fractions=(0.5, 0.17, 0.33),
    )
    dataset = data.dataset("train")
    assert len(dataset) == len(data.splits["train"]) * (8 - 2 - 2)
    sample = dataset[0]
    assert sample["inputs"].shape == (2, 16, 16)
    assert sample["targets"].shape == (1, 16, 16)
    assert sample["conditions"].shape == (1,)
    trajectory, time = int(sample["trajectory"]), int(sample["time"])
    raw = data.source.read("vorticity", trajectory, slice(None))
    expected = data.normalizer.normalize_fields(
        torch.from_numpy(raw[[time - 2, time, time + 2]]), ["vorticity"]
    )
    torch.testing.assert_close(sample["inputs"], expected[:2, 0])
    torch.testing.assert_close(sample["targets"], expected[2])


def test_normalization_ignores_test_split(tmp_path):
    path = tmp_path / "waves.h5"
    values = write_canonical_file(path, n_trajectories=10, n_times=6)
    layout = canonical_layout(path)
    first = prepare_data(layout, TASK, split_seed=1)
    test = first.splits["test"]
    values[test] = 1000.0 * values[test] + 50.0
    with h5py.File(path, "r+") as handle:
        handle["fields/vorticity"][...] = values
        handle["parameters/viscosity"][test] = 7.0
    second = prepare_data(layout, TASK, split_seed=1)
    assert second.splits == first.splits
    assert second.normalizer.to_dict() == first.normalizer.to_dict()


def test_normalization_matches_float64_reference(canonical_file):
    data = prepare_data(canonical_layout(canonical_file), TASK)
    with h5py.File(canonical_file) as handle:
        train = handle["fields/vorticity"][data.splits["train"]].astype(np.float64)
    mean = data.normalizer.field_mean["vorticity"][0]
    std = data.normalizer.field_std["vorticity"][0]
    np.testing.assert_allclose(mean, train.mean(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, train.std(ddof=1), rtol=1e-12)


def _open_hdf5_files() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_four_workers_match_zero_workers(canonical_file, context):
    open_before = _open_hdf5_files()  # files other tests left open, if any
    data = prepare_data(canonical_layout(canonical_file), TASK)
    dataset = data.dataset("train")
    dataset[0]  # opens a handle in this process
    serial = [dataset[i] for i in range(len(dataset))]
    loader = make_loader(dataset, batch_size=4, num_workers=4)
    loader.multiprocessing_context = context
    assert _open_hdf5_files() == open_before
    batches = list(loader)
    for key in ("inputs", "targets", "conditions", "trajectory", "time"):
        parallel = torch.cat([b[key] for b in batches])
        expected = torch.stack([s[key] for s in serial])
        assert torch.equal(parallel, expected), key


def test_epoch_sampler_resumes_mid_epoch():
    sampler = EpochSampler(10, seed=4)
    sampler.set_position(epoch=2, start=0)
    full = list(sampler)
    sampler.set_position(epoch=2, start=6)
    assert list(sampler) == full[6:]
    sampler.set_position(epoch=3, start=0)
    assert list(sampler) != full


def test_task_puts_output_fields_last():
    task = StepTask(input_fields=("velocity", "pressure"), output_fields=("velocity",))
    assert task.input_channel_fields == ("pressure", "velocity")
    assert task.residual


def test_nan_in_test_split_fails_before_training(tmp_path):
    path = tmp_path / "waves.h5"
    values = write_canonical_file(path, n_trajectories=10, n_times=6)
    clean = prepare_data(canonical_layout(path), TASK, split_seed=1)
    values[clean.splits["test"][0], 3, 2, 2] = np.inf
    write_canonical_file(path, n_trajectories=10, n_times=6, vorticity=values)
    with pytest.raises(NonFiniteValueError, match="fields/vorticity"):
        prepare_data(canonical_layout(path), TASK, split_seed=1)


def test_task_with_unknown_names_points_to_config_key(canonical_file):
    layout = canonical_layout(canonical_file)
    with pytest.raises(KeyError, match=r"fix task\.input_fields"):
        prepare_data(layout, {**TASK, "input_fields": ["omega"]})
    with pytest.raises(KeyError, match=r"fix task\.conditions"):
        prepare_data(layout, {**TASK, "conditions": ["nu"]})


def test_constant_condition_warns(tmp_path, caplog):
    path = tmp_path / "waves.h5"
    write_canonical_file(path, n_trajectories=6)
    with h5py.File(path, "r+") as handle:
        handle["parameters/viscosity"][...] = 0.01
    with caplog.at_level(logging.WARNING, logger="surrogates.training.pipeline"):
        prepare_data(canonical_layout(path), TASK)
    assert "condition 'viscosity' is 0.01 in every training trajectory" in caplog.text
