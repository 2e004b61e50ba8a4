"""Spectral and physical terms of the generator loss for periodic 2D fields.

Fields are in model layout `(B, C, H, W)` and normalized as the training data are.
The spectral loss compares Fourier amplitudes, so it ignores phase: a field shifted
periodically has the same amplitudes as the original. The divergence is computed
spectrally, which assumes a periodic domain on a uniform grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


def _real_for_fft(fields: Tensor) -> Tensor:
    # FFTs do not accept bfloat16 and need powers of 2 for float16.
    return fields if fields.dtype == torch.float64 else fields.float()


def amplitude_spectrum(fields: Tensor) -> Tensor:
    """Return ``|rfft2|`` of `(B, C, H, W)` fields, `(B, C, H, W // 2 + 1)`.

    The transform is orthonormal (``norm="ortho"``), so amplitudes have the units of
    the fields and the sum of squared amplitudes matches the field's energy up to the
    halved last axis. Half-precision fields are transformed in float32.
    """
    return torch.fft.rfft2(_real_for_fft(fields), norm="ortho").abs()


def spectral_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of the Fourier amplitudes, per channel.

    Plain amplitudes are compared, not log-amplitudes: the log would weight the
    near-zero amplitudes of unresolved wavenumbers as much as the energetic ones and
    would need an offset to stay finite. Phase is ignored, so the loss is zero for a
    periodic shift of the target.

    Parameters
    ----------
    prediction, target
        Fields `(B, C, H, W)`.

    Returns
    -------
    Tensor
        Scalar, in the units of the fields.
    """
    return (amplitude_spectrum(prediction) - amplitude_spectrum(target)).abs().mean()


def _wavenumbers(n: int, spacing: float, like: Tensor, *, half: bool = False) -> Tensor:
    """Angular wavenumbers of a periodic axis, with the Nyquist mode set to zero.

    The Nyquist mode of an even-length axis has no odd derivative on the grid, so it
    is removed from first derivatives.
    """
    frequencies = np.fft.rfftfreq(n, spacing) if half else np.fft.fftfreq(n, spacing)
    wavenumbers = torch.as_tensor(2 * math.pi * frequencies, dtype=like.dtype)
    if n % 2 == 0:
        wavenumbers[n // 2] = 0.0  # index of the Nyquist mode in both layouts
    return wavenumbers.to(like.device)


def spectral_divergence(
    velocity: Tensor, spacing: Sequence[float] = (1.0, 1.0)
) -> Tensor:
    """Divergence of a periodic 2D vector field, computed spectrally.

    Parameters
    ----------
    velocity
        `(B, 2, H, W)`: channel 0 is the component along W (x in a layout with
        ``space: [y, x]``) and channel 1 the component along H (y).
    spacing
        Grid spacing ``(dy, dx)`` along H and W, in length units.

    Returns
    -------
    Tensor
        ``du_x/dx + du_y/dy`` of shape `(B, H, W)`, in velocity units per length.
    """
    height, width = velocity.shape[-2:]
    velocity = _real_for_fft(velocity)
    k_w = _wavenumbers(width, spacing[1], velocity, half=True)
    k_h = _wavenumbers(height, spacing[0], velocity)
    spectrum_w = torch.fft.rfft2(velocity[:, 0])
    spectrum_h = torch.fft.rfft2(velocity[:, 1])
    divergence = 1j * (
        k_w[None, None, :] * spectrum_w + k_h[None, :, None] * spectrum_h
    )
    return torch.fft.irfft2(divergence, s=(height, width))


def divergence_penalty(
    fields: Tensor,
    channels: Sequence[int],
    *,
    spacing: Sequence[float] = (1.0, 1.0),
    scales: Sequence[float] = (1.0, 1.0),
) -> Tensor:
    """Mean squared divergence of the vector field held in two channels.

    Parameters
    ----------
    fields
        `(B, C, H, W)` normalized fields.
    channels
        ``[i, j]``: channel ``i`` is the component along W (u_x), ``j`` the one
        along H (u_y).
    spacing
        Grid spacing ``(dy, dx)``.
    scales
        Normalization standard deviations of channels ``i`` and ``j``. The field is
        multiplied by them first, so the divergence is that of the physical field
        even when its components were normalized differently.

    Returns
    -------
    Tensor
        Scalar, in (velocity units per length unit) squared.
    """
    velocity = _real_for_fft(fields[:, list(channels)])
    scale = torch.as_tensor(scales, dtype=velocity.dtype, device=fields.device)
    velocity = velocity * scale[None, :, None, None]
    return spectral_divergence(velocity, spacing).pow(2).mean()


def mean_conservation_penalty(
    prediction: Tensor, state: Tensor, channels: Sequence[int] | None = None
) -> Tensor:
    """Mean squared change of the spatial mean of the given channels.

    Parameters
    ----------
    prediction
        Predicted fields `(B, C, H, W)`.
    state
        The newest input state of the same fields `(B, C, H, W)`.
    channels
        Channels whose spatial mean the dynamics conserve; all when None.
    """
    change = prediction.float().mean(dim=(-2, -1)) - state.float().mean(dim=(-2, -1))
    if channels is not None:
        change = change[:, list(channels)]
    return change.pow(2).mean()


class PhysicsTerms:
    """The spectral and physical terms of one run's generator loss.

    Parameters
    ----------
    options
        :class:`~surrogates.training.options.TrainingOptions`; reads
        ``spectral_weight``, ``divergence_weight``, ``divergence_channels``,
        ``mean_conservation_weight`` and ``conserved_channels``.
    n_output_channels
        Channels ``C_out`` of the generator's output.
    residual
        Whether the last ``C_out`` input channels hold the newest state of the
        output fields, which mean conservation compares against.
    channel_scales
        Normalization standard deviation of each output channel.
    spacing
        Grid spacing ``(dy, dx)`` along H and W.

    Raises
    ------
    ValueError
        If a channel index is out of range, or mean conservation is requested for a
        task whose inputs do not hold the output fields.
    """

    def __init__(
        self,
        options,
        *,
        n_output_channels: int,
        residual: bool,
        channel_scales: Sequence[float] | None = None,
        spacing: Sequence[float] = (1.0, 1.0),
    ) -> None:
        self.spectral_weight = options.spectral_weight
        self.divergence_weight = options.divergence_weight
        self.divergence_channels = options.divergence_channels
        self.mean_weight = options.mean_conservation_weight
        self.conserved_channels = options.conserved_channels
        self.n_output_channels = n_output_channels
        scales = channel_scales or [1.0] * n_output_channels
        self.spacing = tuple(float(s) for s in spacing)
        if self.divergence_weight > 0:
            self._check_channels("divergence_channels", self.divergence_channels)
            self.divergence_scales = [scales[c] for c in self.divergence_channels]
        if self.mean_weight > 0:
            self._check_channels("conserved_channels", self.conserved_channels)
            if not residual:
                raise ValueError(
                    f"mean_conservation_weight={self.mean_weight} compares the "
                    "prediction with the newest input state, but the task's input "
                    "fields do not include every output field; add them to "
                    "input_fields or set mean_conservation_weight=0"
                )

    def _check_channels(self, name: str, channels: Sequence[int] | None) -> None:
        if channels is None:
            return
        invalid = [c for c in channels if not 0 <= c < self.n_output_channels]
        if invalid:
            raise ValueError(
                f"{name}={list(channels)} names channels {invalid} outside the "
                f"{self.n_output_channels} output channels; use indices 0 to "
                f"{self.n_output_channels - 1} of the (B, C, H, W) model layout"
            )

    @property
    def active(self) -> bool:
        """Whether any term has a positive weight."""
        weights = (self.spectral_weight, self.divergence_weight, self.mean_weight)
        return any(w > 0 for w in weights)

    def __call__(
        self, prediction: Tensor, targets: Tensor, inputs: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Return the weighted sum of the active terms and each term's value.

        ``prediction`` and ``targets`` are `(B, C_out, H, W)`, ``inputs`` is
        `(B, C_in, H, W)`.
        """
        total = prediction.new_zeros((), dtype=torch.float32)
        scalars: dict[str, float] = {}
        if self.spectral_weight > 0:
            term = spectral_loss(prediction, targets)
            total = total + self.spectral_weight * term
            scalars["train/loss_spectral"] = term.item()
        if self.divergence_weight > 0:
            term = divergence_penalty(
                prediction,
                self.divergence_channels,
                spacing=self.spacing,
                scales=self.divergence_scales,
            )
            total = total + self.divergence_weight * term
            scalars["train/loss_divergence"] = term.item()
        if self.mean_weight > 0:
            state = inputs[:, -self.n_output_channels :]
            term = mean_conservation_penalty(prediction, state, self.conserved_channels)
            total = total + self.mean_weight * term
            scalars["train/loss_mean_conservation"] = term.item()
        return total, scalars


def physics_terms_for(options, dataset) -> PhysicsTerms:
    """Build :class:`PhysicsTerms` with the channel scales and grid of a dataset.

    ``dataset`` is a :class:`~surrogates.data.StepDataset`: its normalizer gives the
    standard deviation of each output channel, and its source's grid gives the
    spacing along the two spatial axes (1 where an axis has a single point).
    """
    weights = (
        options.spectral_weight,
        options.divergence_weight,
        options.mean_conservation_weight,
    )
    if not any(w > 0 for w in weights):
        return PhysicsTerms(options, n_output_channels=0, residual=False)
    task = dataset.task
    normalizer = dataset.normalizer
    scales = [s for name in task.output_fields for s in normalizer.field_std[name]]
    source = dataset.source
    spacing = []
    for axis in source.layout.space[:2]:
        values = np.asarray(source.grid[axis]["values"], dtype=np.float64)
        spacing.append(float(values[1] - values[0]) if values.size > 1 else 1.0)
    return PhysicsTerms(
        options,
        n_output_channels=len(scales),
        residual=task.residual,
        channel_scales=scales,
        spacing=spacing,
    )
