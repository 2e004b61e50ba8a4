"""Autoregressive rollout of a step generator, shared by training and emulation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def autoregressive_rollout(
    step: Callable[[Tensor, Tensor | None], Tensor],
    inputs: Tensor,
    conditions: Tensor | None,
    n_steps: int,
) -> Tensor:
    """Apply ``step`` ``n_steps`` times, feeding each output back as the newest state.

    Each new state is appended to the input window and the oldest state is dropped,
    so the window keeps ``n_steps_input = C_in / C_out`` states. This needs the
    generator's outputs to be the input fields in the same channel order (the
    output fields last in ``inputs``, as ``StepTask.input_channel_fields`` orders
    them when every input field is an output field). Gradients flow through the
    whole rollout unless the caller runs it under ``torch.no_grad``.

    Parameters
    ----------
    step
        Maps ``(inputs (B, C_in, H, W), conditions (B, n_conditions))`` to the next
        state ``(B, C_out, H, W)``; a generator or a wrapper of one.
    inputs
        The initial window ``(B, C_in, H, W)``, oldest state first, with ``C_in``
        a multiple of ``C_out``.
    conditions
        Normalized conditions ``(B, n_conditions)``, the same at every step; None
        for a generator without conditions.
    n_steps
        Number of steps, at least 1.

    Returns
    -------
    Tensor
        The generated states ``(B, n_steps, C_out, H, W)``, oldest first.

    Raises
    ------
    ValueError
        If ``n_steps < 1`` or ``C_in`` is not a multiple of the ``C_out`` that
        ``step`` returns.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps={n_steps} is invalid; expected an integer >= 1")
    states = []
    window = inputs
    for _ in range(n_steps):
        state = step(window, conditions)
        n_channels = state.shape[1]
        if window.shape[1] % n_channels != 0:
            raise ValueError(
                f"inputs have {window.shape[1]} channels, which is not a multiple "
                f"of the {n_channels} output channels; a rollout feeds outputs back "
                "as inputs, so every input field must be an output field"
            )
        states.append(state)
        window = torch.cat([window[:, n_channels:], state], dim=1)
    return torch.stack(states, dim=1)
