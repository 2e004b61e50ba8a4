"""Mixed precision and optional ``torch.compile`` of the networks' forward passes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast context and loss scalers for one precision setting.

    ``"fp32"`` runs everything in float32. ``"bf16"`` runs the forward passes under
    ``torch.autocast`` with bfloat16, on CPU or CUDA, without loss scaling because
    bfloat16 has the exponent range of float32. ``"fp16"`` autocasts to float16 and
    scales the losses with ``torch.amp.GradScaler`` so small gradients do not
    underflow; it is meant for CUDA, and on a CPU it runs slowly with a warning.

    Parameters
    ----------
    name
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    device
        The device the networks run on.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """

    def __init__(self, name: str, device: torch.device | str) -> None:
        if name not in AUTOCAST_DTYPES:
            raise ValueError(
                f"precision={name!r} is not supported; expected one of "
                f"{list(AUTOCAST_DTYPES)}"
            )
        self.device = torch.device(device)
        if name == "fp16" and self.device.type != "cuda":
            # CPU autocast to float16 and the CPU GradScaler work, and the tests
            # use them to check loss scaling, but they are slow.
            log.warning(
                "precision='fp16' on %s: float16 arithmetic is slow on CPUs and "
                "is meant for checks of loss scaling; train with precision='bf16' "
                "or 'fp32' there",
                self.device,
            )
        self.name = name
        self.dtype = AUTOCAST_DTYPES[name]

    @property
    def uses_loss_scaling(self) -> bool:
        """Whether losses are scaled before the backward pass (float16 only)."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Return the autocast context for forward passes (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Return a new loss scaler, disabled unless the precision is fp16."""
        return torch.amp.GradScaler(self.device.type, enabled=self.uses_loss_scaling)


class CompiledForward:
    """Call a module through ``torch.compile``, or eagerly once compilation failed.

    ``torch.compile`` compiles on the first call, so a failure (a missing C++
    compiler, an unsupported Python version or operator) shows up there. The first
    failure is logged as a WARNING with the exception, and every later call runs
    the module eagerly. The module itself is left unwrapped, so its state dict keys
    do not change.

    Compiled graphs do not support double backward, so gradient penalties call the
    module itself rather than this wrapper.
    """

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module
        self.name = name
        self._compiled: Callable[..., Any] | None = None
        try:
            self._compiled = torch.compile(module)
        except Exception as error:  # any failure means eager mode
            self._fall_back(error)

    def _fall_back(self, error: BaseException) -> None:
        log.warning(
            "torch.compile of the %s failed, so it runs in eager mode: %s: %s",
            self.name,
            type(error).__name__,
            str(error).strip().splitlines()[0] if str(error).strip() else "",
        )
        self._compiled = None

    @property
    def compiled(self) -> bool:
        """Whether calls still go through the compiled module."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as error:  # compiler errors share no base class
                self._fall_back(error)
        return self.module(*args, **kwargs)


def forward_function(module: nn.Module, name: str, compile: bool) -> Callable[..., Any]:
    """Return ``module`` itself, or a :class:`CompiledForward` of it if ``compile``.

    A module with parametrizations (spectral normalization) stays eager.
    """
    if not compile:
        return module
    if any(parametrize.is_parametrized(m) for m in module.modules()):
        # NOTE: spectral normalization updates its power-iteration buffers in place
        # in every training-mode forward pass. With torch 2.13 the compiled
        # backward of an earlier call then fails with "modified by an inplace
        # operation", as it does when the discriminator scores real and fake
        # targets before one backward pass.
        log.info(
            "compile: the %s has parametrizations (spectral normalization), so it "
            "runs in eager mode",
            name,
        )
        return module
    return CompiledForward(module, name)
