"""Checkpoints: round trip, atomic replacement, rejection of pickled code."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from surrogates.training import CheckpointError, load_checkpoint, save_checkpoint
from surrogates.training.checkpoint import latest_checkpoint


def _save(directory, step, keep=2):
    return save_checkpoint(
        directory,
        step,
        weights={"generator": {"w": torch.full((2, 3), float(step))}},
        state={"counters": {"step": step}, "rng": torch.arange(4)},
        meta={"note": "test"},
        keep=keep,
    )


def test_round_trip(tmp_path):
    path = _save(tmp_path, 7)
    loaded = load_checkpoint(tmp_path)
    assert loaded.path == path
    assert torch.equal(loaded.weights["generator"]["w"], torch.full((2, 3), 7.0))
    assert loaded.state["counters"]["step"] == 7
    assert loaded.meta["step"] == 7
    assert loaded.meta["note"] == "test"


def test_keeps_only_the_newest(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["step_00000002", "step_00000003"]
    assert latest_checkpoint(tmp_path).name == "step_00000003"


class _Payload:
    """Pickles as a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_callable_is_rejected_and_never_runs(tmp_path):
    path = _save(tmp_path, 1)
    marker = tmp_path / "payload_ran"
    with open(path / "state.pt", "wb") as handle:
        pickle.dump({"optimizer_g": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match="rejected"):
        load_checkpoint(path)
    assert not marker.exists()


def test_torch_saved_callable_is_rejected(tmp_path):
    path = _save(tmp_path, 1)
    marker = tmp_path / "payload_ran"
    torch.save({"rng": _Payload(marker)}, path / "state.pt")
    with pytest.raises(CheckpointError, match="rejected"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_checkpoint_says_where(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path)


def test_leftover_partial_write_keeps_previous(tmp_path):
    _save(tmp_path, 1)
    partial = tmp_path / ".step_00000002.partial-999"
    partial.mkdir()
    (partial / "weights.safetensors").write_bytes(b"\x00" * 10)
    assert load_checkpoint(tmp_path).meta["step"] == 1


def test_pointer_to_missing_directory_falls_back(tmp_path, caplog):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    (tmp_path / "latest").write_text("step_00000003\n")
    with caplog.at_level("WARNING", logger="surrogates.training.checkpoint"):
        assert load_checkpoint(tmp_path).meta["step"] == 2
    assert "missing or incomplete" in caplog.text


def test_missing_pointer_uses_newest_complete(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    (tmp_path / "latest").unlink()
    (tmp_path / "step_00000002" / "state.pt").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000001"


def test_prune_removes_later_steps_and_leftovers(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, keep=5)
    leftover = tmp_path / ".step_00000004.partial-999"
    leftover.mkdir()
    pointer = tmp_path / ".latest.partial-999"
    pointer.write_text("step_00000004\n")
    _save(tmp_path, 2, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["latest", "step_00000001", "step_00000002"]
    assert load_checkpoint(tmp_path).meta["step"] == 2
