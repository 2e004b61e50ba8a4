"""Exponential moving average of generator weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_model(model: nn.Module, decay: float, warmup: int = 10) -> AveragedModel:
    """Wrap ``model`` in an EMA over its trainable parameters.

    The effective decay is ``min(decay, (1 + n) / (warmup + n))`` after ``n`` updates,
    so early averages are not dominated by the random initialization. Buffers are not
    averaged (``use_buffers=False``); :func:`update_ema` copies them instead. The
    update counter ``n_averaged`` is a buffer of the wrapper and is saved and
    restored with its state dict.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay={decay} must be in [0, 1)")

    @torch.no_grad()
    def update(averaged, current, n_averaged):
        n = float(n_averaged)
        rate = min(decay, (1.0 + n) / (warmup + n))
        torch._foreach_lerp_(averaged, current, 1.0 - rate)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=False)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """Average ``model``'s parameters into ``ema`` and copy its buffers.

    Buffers such as the power-iteration vectors ``_u`` and ``_v`` of spectral
    normalization are unit vectors that track the current weights, so an average of
    them means nothing. A copy keeps the averaged module usable in evaluation mode
    instead of leaving it the vectors from the time the EMA was created.
    """
    ema.update_parameters(model)
    for averaged, current in zip(ema.module.buffers(), model.buffers(), strict=True):
        averaged.copy_(current)
