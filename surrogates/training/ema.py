"""Exponential moving average of generator weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_model(model: nn.Module, decay: float, warmup: int = 10) -> AveragedModel:
    """Wrap ``model`` in an EMA over its trainable parameters.

    The effective decay is ``min(decay, (1 + n) / (warmup + n))`` after ``n`` updates,
    so early averages are not dominated by the random initialization. Buffers are not
    averaged (``use_buffers=False``). The update counter ``n_averaged`` is a buffer of
    the wrapper and is saved and restored with its state dict.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay={decay} must be in [0, 1)")

    @torch.no_grad()
    def update(averaged, current, n_averaged):
        n = float(n_averaged)
        rate = min(decay, (1.0 + n) / (warmup + n))
        torch._foreach_lerp_(averaged, current, 1.0 - rate)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=False)
