"""Isotropic power spectra of periodic 2D fields and band-wise spectrum errors.

Fields are ``(..., H, W)`` on a periodic grid with ``y`` along ``H`` and ``x`` along
``W``. Wavenumbers are counted in units of the fundamental ``2π / L`` of the longer
side of the domain, so on a square domain shell ``k`` contains the Fourier modes
``(n_y, n_x)`` with ``round(sqrt(n_y**2 + n_x**2)) == k``.
"""

import math

import torch
from torch import Tensor

_THREE_BAND_NAMES = ("low", "middle", "high")


def _domain_lengths(
    domain_length: float | tuple[float, float] | None, height: int, width: int
) -> tuple[float, float]:
    if domain_length is None:
        # equal grid spacing in y and x, so the side lengths scale with the points
        return float(height), float(width)
    if isinstance(domain_length, int | float):
        lengths = (float(domain_length), float(domain_length))
    else:
        lengths = tuple(float(length) for length in domain_length)
    if len(lengths) != 2 or not all(math.isfinite(v) and v > 0 for v in lengths):
        raise ValueError(
            f"domain_length={domain_length!r} is invalid, expected a positive length "
            "or a pair (L_y, L_x) of positive lengths in the units of the grid"
        )
    return lengths


def _shell_indices(
    height: int, width: int, lengths: tuple[float, float], device: torch.device
) -> tuple[Tensor, int]:
    """Return the shell of each rfft2 mode, (H, W // 2 + 1), and how many are full."""
    length_y, length_x = lengths
    length_max = max(length_y, length_x)
    n_y = torch.fft.fftfreq(height, d=1.0 / height, dtype=torch.float64, device=device)
    n_x = torch.fft.rfftfreq(width, d=1.0 / width, dtype=torch.float64, device=device)
    k_y = n_y * (length_max / length_y)
    k_x = n_x * (length_max / length_x)
    radius = torch.sqrt(k_y[:, None] ** 2 + k_x[None, :] ** 2)

    # nearest integer with halves rounded up, independent of torch.round's ties
    shells = torch.floor(radius + 0.5).long()
    nyquist = min(
        (height // 2) * length_max / length_y, (width // 2) * length_max / length_x
    )
    return shells, math.floor(nyquist + 1e-9) + 1


def isotropic_power_spectrum(
    field: Tensor,
    *,
    domain_length: float | tuple[float, float] | None = None,
    include_corners: bool = False,
) -> tuple[Tensor, Tensor]:
    """Compute the shell-summed power spectrum of a periodic 2D field.

    The power of each Fourier mode is ``|F(n_y, n_x)|**2 / (H * W)**2`` and shell
    ``k`` sums it over the modes whose wavenumber rounds to ``k``. The half spectrum
    of :func:`torch.fft.rfft2` counts each column twice, except the zero column and,
    for even ``W``, the Nyquist column, which have no mirror image. With this
    normalization the shells sum to the grid mean of ``field**2`` (Parseval) when
    every mode falls into a returned shell. No factor 1/2 is applied.

    Parameters
    ----------
    field : Tensor
        ``(..., H, W)``, real, float32 or float64, on any device.
    domain_length : float or (float, float), optional
        Side length ``L`` of a square domain or the pair ``(L_y, L_x)``. It only
        matters when the two sides differ. By default the grid spacing is equal
        along both axes, so ``(L_y, L_x)`` is proportional to ``(H, W)``.
    include_corners : bool, default False
        Also return the shells beyond the largest full shell, which only the corner
        modes of the grid reach. Then every mode is counted and Parseval holds for
        any field on any grid. By default these shells are dropped, so Parseval
        holds only for fields without power in the corners (for example spectral
        data dealiased with the 2/3 rule).

    Returns
    -------
    k : Tensor
        ``(K,)`` float64 shell wavenumbers ``0 .. K-1`` in units of
        ``2π / max(L_y, L_x)``. By default ``K = min(H, W) // 2 + 1`` on a square
        domain, and in general ``K - 1`` is the smaller Nyquist wavenumber of the
        two axes in those units.
    spectrum : Tensor
        ``(..., K)`` float64, in the squared units of ``field``.

    Raises
    ------
    ValueError
        If ``field`` has fewer than 2 dimensions, is complex, or ``domain_length``
        is not positive.
    """
    if field.ndim < 2 or field.is_complex():
        raise ValueError(
            f"field must be a real tensor of shape (..., H, W), got dtype "
            f"{field.dtype} and shape {tuple(field.shape)}"
        )
    height, width = field.shape[-2:]
    lengths = _domain_lengths(domain_length, height, width)
    shells, n_shells = _shell_indices(height, width, lengths, field.device)
    if include_corners:
        n_shells = int(shells.max()) + 1

    # power per mode; columns with a mirror image in the missing half count twice
    coefficients = torch.fft.rfft2(field.to(torch.float64), norm="forward")
    power = coefficients.real.square() + coefficients.imag.square()
    column_weight = torch.full(
        (shells.shape[-1],), 2.0, dtype=torch.float64, device=field.device
    )
    column_weight[0] = 1.0
    if width % 2 == 0:
        column_weight[-1] = 1.0
    power = (power * column_weight).flatten(start_dim=-2)

    # sum the modes of each shell
    inside = (shells < n_shells).flatten()
    spectrum = power.new_zeros((*power.shape[:-1], n_shells))
    spectrum.index_add_(power.ndim - 1, shells.flatten()[inside], power[..., inside])
    k = torch.arange(n_shells, dtype=torch.float64, device=field.device)
    return k, spectrum


def _band_edges(k_max: int, n_bands: int) -> list[int]:
    """Split ``1 .. k_max`` into bands whose widths differ by at most one shell."""
    width, remainder = divmod(k_max, n_bands)
    edges = [1]
    for band in range(n_bands):
        edges.append(edges[-1] + width + (1 if band < remainder else 0))
    return edges


def spectrum_band_log_error(
    spectrum_prediction: Tensor,
    spectrum_target: Tensor,
    *,
    k_max: int | None = None,
    n_bands: int = 3,
    floor: float = 1e-30,
) -> dict[str, Tensor]:
    """Compute the mean absolute log10 ratio of two spectra in wavenumber bands.

    The shells ``k = 1 .. k_max`` are split into ``n_bands`` contiguous bands whose
    widths differ by at most one shell (the wider bands come first). Shell 0, the
    mean, is left out. Each band's error is the mean over its shells of
    ``|log10(P_prediction(k) / P_target(k))|``, so 0 is a perfect match and 1 is an
    order of magnitude. Average spectra over the batch before calling this function
    if the error of the mean spectrum is wanted.

    Parameters
    ----------
    spectrum_prediction, spectrum_target : Tensor
        ``(..., K)`` spectra of the same shape, as returned by
        :func:`isotropic_power_spectrum`.
    k_max : int, optional
        Last shell taken into account, ``n_bands <= k_max <= K - 1``. The default
        ``K - 1`` is the largest full shell, ``min(H, W) // 2``, for spectra computed
        without corners. Pass ``N // 3`` for data dealiased with the 2/3 rule.
    n_bands : int, default 3
        Number of bands. Three bands are named ``"low"``, ``"middle"`` and
        ``"high"``, any other number ``"band0"``, ``"band1"``, ...
    floor : float, default 1e-30
        Lower bound applied to both spectra before the logarithm, in their units,
        so empty shells give a finite error.

    Returns
    -------
    dict of str to Tensor
        One float64 entry of shape ``(...)`` per band name, and ``"band_edges"``, an
        int64 tensor of shape ``(n_bands + 1,)``. Band ``i`` contains the shells
        ``band_edges[i] <= k < band_edges[i + 1]``.

    Raises
    ------
    ValueError
        If the shapes differ or ``k_max`` and ``n_bands`` do not fit the spectra.
    """
    if spectrum_prediction.shape != spectrum_target.shape:
        raise ValueError(
            f"spectra must have the same shape (..., K), got spectrum_prediction "
            f"shape {tuple(spectrum_prediction.shape)} and spectrum_target shape "
            f"{tuple(spectrum_target.shape)}"
        )
    if spectrum_target.ndim == 0:
        raise ValueError("spectra must have a wavenumber axis, got 0-dim tensors")
    n_shells = spectrum_target.shape[-1]
    k_max = n_shells - 1 if k_max is None else k_max
    if not 1 <= n_bands <= k_max <= n_shells - 1:
        raise ValueError(
            f"got k_max={k_max} and n_bands={n_bands} for spectra with K={n_shells} "
            f"shells; expected 1 <= n_bands <= k_max <= {n_shells - 1}"
        )

    log_prediction = spectrum_prediction.to(torch.float64).clamp_min(floor).log10()
    log_target = spectrum_target.to(torch.float64).clamp_min(floor).log10()
    log_ratio = (log_prediction - log_target).abs()

    edges = _band_edges(k_max, n_bands)
    names = _THREE_BAND_NAMES if n_bands == 3 else [f"band{i}" for i in range(n_bands)]
    errors = {
        name: log_ratio[..., start:stop].mean(dim=-1)
        for name, start, stop in zip(names, edges[:-1], edges[1:], strict=True)
    }
    errors["band_edges"] = torch.tensor(
        edges, dtype=torch.int64, device=spectrum_target.device
    )
    return errors
