"""Wall time of the solver against the surrogate over the same physical time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from surrogates.emulator import Surrogate

log = logging.getLogger(__name__)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def measure_speedup(
    surrogate: Surrogate,
    data,
    solver_advance: Callable,
    duration: float,
) -> dict[str, float | str | int]:
    """Time the solver and the surrogate advancing the test initial states.

    Both advance every initial state of ``data`` by ``duration`` in one batch, in
    this process on the surrogate's device, after one untimed warm-up call each.
    The speedup is ``solver_s / surrogate_s``.
    """
    device = surrogate.device
    states = data.initial_states[:, -1].to(device)
    conditions = {k: v.to(device) for k, v in data.conditions.items()}
    n_steps = data.n_steps

    def run_solver():
        return solver_advance(states, conditions, duration)

    def run_surrogate():
        return surrogate.rollout_tensor(data.initial_states, conditions, n_steps)

    solver_advance(
        states[:1], {k: v[:1] for k, v in conditions.items()}, duration / n_steps
    )
    surrogate.rollout_tensor(
        data.initial_states[:1], {k: v[:1] for k, v in conditions.items()}, 1
    )
    solver_s = _timed(run_solver, device)
    surrogate_s = _timed(run_surrogate, device)
    result = {
        "device": str(device),
        "n_states": int(states.shape[0]),
        "duration": duration,
        "n_surrogate_steps": n_steps,
        "solver_s": solver_s,
        "surrogate_s": surrogate_s,
        "speedup": solver_s / surrogate_s,
    }
    log.info(
        "speed: solver %.3f s, surrogate %.3f s, speedup %.1fx on %s",
        solver_s,
        surrogate_s,
        result["speedup"],
        device,
    )
    return result
