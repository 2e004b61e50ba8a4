"""Fourier-space helpers for fields on a periodic square grid.

Every function here works on real fields stored as ``(..., y, x)`` and on their
``torch.fft.rfft2`` transforms of shape ``(..., N, N // 2 + 1)``, where the first
spectral axis is the full set of ``k_y`` and the second the non-negative ``k_x``.
Wavenumbers are angular, ``k = 2 pi n / L`` for integer mode numbers ``n``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_numbers(
    n_grid: int, *, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Return the integer mode numbers of an rfft2 spectrum.

    Parameters
    ----------
    n_grid : int
        Points per axis, N.
    device : torch.device or str
        Device of the returned tensors.

    Returns
    -------
    n_y : Tensor
        ``(N, 1)`` int64, in FFT order ``0, 1, ..., -1``.
    n_x : Tensor
        ``(1, N // 2 + 1)`` int64, ``0, 1, ..., N // 2``.
    """
    n_y = torch.fft.fftfreq(n_grid, d=1.0 / n_grid, device=device).round().long()
    n_x = torch.fft.rfftfreq(n_grid, d=1.0 / n_grid, device=device).round().long()
    return n_y[:, None], n_x[None, :]


def wavenumbers(
    n_grid: int,
    domain_length: float,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Return the angular wavenumbers ``k_y`` ``(N, 1)`` and ``k_x`` ``(1, N//2 + 1)``.

    Units are 1 / (units of ``domain_length``).
    """
    n_y, n_x = mode_numbers(n_grid, device=device)
    scale = 2.0 * math.pi / domain_length
    return n_y.to(dtype) * scale, n_x.to(dtype) * scale


def truncation_mask(
    n_grid: int, *, dealias: bool, device: torch.device | str = "cpu"
) -> Tensor:
    """Return the boolean ``(N, N // 2 + 1)`` mask of modes a solver keeps.

    With ``dealias=True`` this is the 2/3 rule: a mode is kept when both
    ``|n_x| < N / 3`` and ``|n_y| < N / 3``, so the product of two kept fields aliases
    only onto discarded modes. With ``dealias=False`` only the Nyquist row and column
    are dropped, because their derivatives are not representable as real fields.
    """
    n_y, n_x = mode_numbers(n_grid, device=device)
    cutoff = n_grid / 3.0 if dealias else n_grid / 2.0
    return (n_y.abs() < cutoff) & (n_x.abs() < cutoff)


def rfft_weights(n_grid: int, *, device: torch.device | str = "cpu") -> Tensor:
    """Return ``(1, N // 2 + 1)`` multiplicities of rfft2 columns in the full spectrum.

    Columns ``0 < n_x < N / 2`` represent themselves and their complex conjugates,
    so they count twice. Column 0 and, for even N, the Nyquist column count once.
    """
    _, n_x = mode_numbers(n_grid, device=device)
    weights = torch.full(n_x.shape, 2.0, device=device, dtype=torch.float64)
    weights[n_x == 0] = 1.0
    if n_grid % 2 == 0:
        weights[n_x == n_grid // 2] = 1.0
    return weights


def shell_sum(density_hat: Tensor, n_grid: int) -> tuple[Tensor, Tensor]:
    """Sum a per-mode spectral density over isotropic shells of integer ``|n|``.

    Parameters
    ----------
    density_hat : Tensor
        ``(B, N, N // 2 + 1)`` real, non-negative per-mode values of an rfft2
        spectrum (for example ``|u_hat|^2 / 2``), before the conjugate-pair weights.
    n_grid : int
        Points per axis, N.

    Returns
    -------
    shells : Tensor
        ``(K,)`` int64 shell numbers ``0 .. K - 1``. A mode belongs to shell
        ``round(|n|)``. Shells above ``N / 2`` are only partly inside the grid.
    spectrum : Tensor
        ``(B, K)``, the weighted sum over each shell, so that ``spectrum.sum(-1)``
        equals the sum of ``density_hat`` over the full (not half) spectrum.
    """
    device = density_hat.device
    n_y, n_x = mode_numbers(n_grid, device=device)
    shell_index = torch.sqrt((n_y**2 + n_x**2).double()).round().long()
    n_shells = int(shell_index.max()) + 1

    weighted = density_hat * rfft_weights(n_grid, device=device).to(density_hat.dtype)
    batch = weighted.shape[0]
    spectrum = torch.zeros(batch, n_shells, dtype=weighted.dtype, device=device)
    index = shell_index.expand_as(weighted[0]).reshape(1, -1).expand(batch, -1)
    spectrum.scatter_add_(1, index, weighted.reshape(batch, -1))
    return torch.arange(n_shells, device=device), spectrum
