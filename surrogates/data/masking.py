"""Static domain masks: selecting valid points, zero filling, and storing masks.

A mask is a boolean ``(H, W)`` array or tensor, True at points inside the domain.
Everything here selects (boolean indexing, ``torch.where``) instead of multiplying by
the mask, because a value at a masked point may be NaN and ``NaN * 0`` is NaN.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch


def select_valid(fields: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Return the values of ``fields`` ``(..., H, W)`` at valid points, ``(..., N)``.

    ``mask`` is a boolean ``(H, W)`` tensor, True at the ``N`` points inside the
    domain; None keeps every point (flattened).
    """
    if mask is None:
        return fields.flatten(-2)
    return fields[..., mask]


def fill_masked(
    fields: torch.Tensor, mask: torch.Tensor | None, value: float = 0.0
) -> torch.Tensor:
    """Return ``fields`` ``(..., H, W)`` with ``value`` at the masked points."""
    if mask is None:
        return fields
    return torch.where(mask, fields, fields.new_full((), value))


class MaskedOutput:
    """A network call whose output is 0.0 at masked points, as training data is.

    Wraps ``forward(*args) -> (B, C, H, W)``; with ``mask`` None it returns the
    output unchanged.
    """

    def __init__(
        self, forward: Callable[..., torch.Tensor], mask: torch.Tensor | None
    ) -> None:
        self.forward = forward
        self.mask = mask

    def __call__(self, *args: Any) -> torch.Tensor:
        return fill_masked(self.forward(*args), self.mask)


def encode_mask(mask: np.ndarray | None) -> dict[str, Any] | None:
    """Return a JSON-ready form of a boolean mask: its shape and packed bits."""
    if mask is None:
        return None
    bits = np.packbits(np.asarray(mask, dtype=bool).ravel())
    return {"shape": list(mask.shape), "bits": base64.b64encode(bits).decode()}


def decode_mask(encoded: Mapping[str, Any] | None) -> np.ndarray | None:
    """Return the boolean mask that :func:`encode_mask` encoded, or None."""
    if encoded is None:
        return None
    shape = tuple(encoded["shape"])
    bits = np.frombuffer(base64.b64decode(encoded["bits"]), dtype=np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).astype(bool).reshape(shape)
