"""Checkpoints that run no code on load, written atomically.

A checkpoint is a directory ``step_<N>/`` holding

- ``weights.safetensors``: model weights (generator, EMA generator, discriminator,
  and the temporal discriminator of runs that train one),
- ``state.pt``: optimizer and random-generator states, tensors and plain numbers only,
  loaded with ``torch.load(weights_only=True)``,
- ``meta.json``: everything else (config, normalization, layout, step, metrics).

The directory is written under a temporary name, its files are flushed to disk with
``fsync``, and it is renamed when complete. The ``latest`` file beside it is then
replaced atomically. A process killed at any point therefore leaves a loadable
checkpoint behind: ``latest`` names either the previous checkpoint or the new,
complete one. Where ``latest`` is missing or names a directory that is gone (a kill
while a checkpoint of the same step was being replaced), :func:`latest_checkpoint`
falls back to the newest complete ``step_*`` directory. One process writes to a
checkpoints directory at a time (rank zero).
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
    _fsync_directory(directory)
    _point_latest(directory, name)
    _prune(directory, final, keep)
    log.info("saved checkpoint %s", final)
    return final


def _fsync_directory(directory: Path) -> None:
    # Makes the renames durable across a power loss; a killed process needs no
    # flush, because the kernel applies a rename completely or not at all.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; the renames stay unflushed
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _point_latest(directory: Path, name: str) -> None:
    # os.replace is one rename(2) onto an existing name, which POSIX makes atomic:
    # a reader sees the old pointer or the new one, never a partial file. The new
    # content is flushed before the rename, so the pointer is never empty.
    pointer = directory / f".{LATEST}.partial-{os.getpid()}"
    pointer.write_text(name + "\n")
    _fsync_file(pointer)
    os.replace(pointer, directory / LATEST)
    _fsync_directory(directory)


def _prune(directory: Path, newest: Path, keep: int) -> None:
    """Remove all but ``keep`` checkpoints up to ``newest``, and leftover writes.

    Checkpoints of later steps than ``newest`` were left by a run that went back to
    an earlier checkpoint (a rollback) and are removed too, as are temporary
    directories of writes that a killed process never finished.
    """
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir())
    kept_steps = [p for p in steps if p.name <= newest.name][-max(keep, 1) :]
    leftovers = [
        *directory.glob(".step_*.partial-*"),
        *directory.glob(".step_*.stale-*"),
        *directory.glob(f".{LATEST}.partial-*"),
    ]
    for old in [p for p in steps if p not in kept_steps] + leftovers:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (WEIGHTS, STATE, META))


def latest_checkpoint(directory: Path | str) -> Path | None:
    """Return the newest checkpoint of ``directory``, or ``None`` if there is none.

    That is the one ``latest`` names; when ``latest`` is missing or names a missing
    or incomplete directory, the complete ``step_*`` directory of the highest step.
    """
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        path = directory / pointer.read_text().strip()
        if _is_complete(path):
            return path
        log.warning(
            "%s names %s, which is missing or incomplete; using the newest complete "
            "checkpoint instead",
            pointer,
            path.name,
        )
    complete = [p for p in sorted(directory.glob("step_*")) if _is_complete(p)]
    return complete[-1] if complete else None


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
        If a file is missing or corrupt, or ``state.pt`` contains anything but tensors
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
