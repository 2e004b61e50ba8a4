"""Checkpoints that run no code on load, written atomically.

A checkpoint is a directory ``step_<N>/`` holding

- ``weights.safetensors``: model weights (generator, EMA generator, discriminator),
- ``state.pt``: optimizer and random-generator states, tensors and plain numbers only,
  loaded with ``torch.load(weights_only=True)``,
- ``meta.json``: everything else (config, normalization, layout, step, metrics).

The directory is written under a temporary name and renamed when complete, and the
``latest`` file beside it is replaced atomically afterwards, so a process killed at
any point leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
META = "meta.json"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or unsafe to load."""


@dataclasses.dataclass
class Checkpoint:
    """Loaded checkpoint contents, grouped by model name."""

    path: Path
    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    meta: dict[str, Any]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata")


def save_checkpoint(
    directory: Path | str,
    step: int,
    *,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write a checkpoint for ``step`` under ``directory`` and point ``latest`` at it.

    Parameters
    ----------
    weights
        Model name -> state dict of tensors.
    state
        Optimizer states, RNG states and counters: tensors, numbers, strings, lists
        and dicts of those.
    meta
        JSON-serializable metadata.
    keep
        Number of most recent checkpoints kept; older ones are deleted.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = directory / name
    partial = directory / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()

    flat = {
        f"{model}/{key}": tensor.detach().cpu().contiguous()
        for model, state_dict in weights.items()
        for key, tensor in state_dict.items()
    }
    save_file(flat, partial / WEIGHTS)
    torch.save(state, partial / STATE)
    _write_json(partial / META, {**meta, "step": step})
    for file in (WEIGHTS, STATE, META):
        _fsync_file(partial / file)

    if final.exists():
        stale = directory / f".{name}.stale-{os.getpid()}"
        final.rename(stale)
        partial.rename(final)
        shutil.rmtree(stale)
    else:
        partial.rename(final)
    _point_latest(directory, name)
    _prune(directory, keep)
    log.info("saved checkpoint %s", final)
    return final


def _point_latest(directory: Path, name: str) -> None:
    pointer = directory / f".{LATEST}.partial-{os.getpid()}"
    pointer.write_text(name + "\n")
    _fsync_file(pointer)
    os.replace(pointer, directory / LATEST)


def _prune(directory: Path, keep: int) -> None:
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir())
    for old in steps[: max(len(steps) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(directory: Path | str) -> Path | None:
    """Return the checkpoint ``latest`` points to, or ``None`` if there is none."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    path = Path(directory) / pointer.read_text().strip()
    return path if path.is_dir() else None


def resolve_checkpoint(path: Path | str) -> Path:
    """Find a checkpoint directory from a run directory, checkpoints folder or step.

    Raises
    ------
    CheckpointError
        If no checkpoint is found there.
    """
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    for candidate in (path, path / "checkpoints"):
        found = latest_checkpoint(candidate)
        if found is not None:
            return found
    raise CheckpointError(
        f"no checkpoint found at {path}: expected a run directory with "
        f"checkpoints/{LATEST}, a checkpoints directory, or a step_* directory "
        f"holding {WEIGHTS}"
    )


def load_checkpoint(path: Path | str, *, with_state: bool = True) -> Checkpoint:
    """Load a checkpoint without running any code stored in it.

    Raises
    ------
    CheckpointError
        If a file is missing or corrupt, or ``state.pt`` holds anything but tensors
        and plain data (for example a pickled callable).
    """
    path = resolve_checkpoint(path)
    try:
        flat = load_file(path / WEIGHTS)
        meta = json.loads((path / META).read_text())
    except (OSError, SafetensorError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({error})") from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        model, _, name = key.partition("/")
        weights.setdefault(model, {})[name] = tensor
    state: dict[str, Any] = {}
    if with_state:
        try:
            state = torch.load(path / STATE, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise CheckpointError(
                f"{path / STATE}: rejected because it contains objects other than "
                f"tensors and plain data ({str(error).splitlines()[0]}). Only load "
                "checkpoints from sources you trust, and never with weights_only=False."
            ) from None
        except (OSError, RuntimeError, EOFError) as error:
            raise CheckpointError(f"{path / STATE}: cannot read ({error})") from None
    return Checkpoint(path=path, weights=weights, state=state, meta=meta)
