"""Capture and restore every random number generator a training run uses.

The legacy global NumPy generator is included because user code and libraries may
draw from it; the framework itself draws from torch generators.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng_state() -> dict[str, torch.Tensor]:
    """Return Python, NumPy, torch CPU and CUDA generator states as tensors.

    Tensors only, so the state can be saved and loaded with ``weights_only=True``.
    """
    version, python_state, gauss = random.getstate()
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "python": torch.tensor([version, *python_state], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [float("nan") if gauss is None else gauss], dtype=torch.float64
        ),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_extra": torch.tensor(
            [position, has_gauss, cached_gauss], dtype=torch.float64
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = cuda_state
    return state


def restore_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore generator states captured by :func:`capture_rng_state`."""
    python = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((python[0], tuple(python[1:]), None if gauss != gauss else gauss))
    position, has_gauss, cached = state["numpy_extra"].tolist()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002
        ("MT19937", keys, int(position), int(has_gauss), cached)
    )
    torch.set_rng_state(state["torch"])
    cuda_states = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)
