"""Conditional PatchGAN discriminator with spectral normalization."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from surrogates.models.layers import check_conditions, check_field, conv2d

logger = logging.getLogger(__name__)


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN that scores each patch of a target field as real or fake.

    The network reads the concatenation ``[inputs, target, target - state]`` where
    ``state = inputs[:, -target_channels:]``, so it sees the increment from the
    current state directly. When ``in_channels < target_channels`` no state exists
    and it reads ``[inputs, target]``. ``n_layers`` stride-2 3x3 convolutions
    (channels ``base_channels * 2**min(i, 3)``) and one stride-1 3x3 convolution,
    each followed by LeakyReLU(0.2), give features `(B, C, H / 2**n_layers,
    W / 2**n_layers)` (rounded up). A 1x1 convolution maps them to patch logits.
    There is no batch normalization, and every convolution and linear weight is
    spectrally normalized.

    Conditions enter projection-discriminator style: an MLP embeds them to
    `(B, C)`, and the inner product of that embedding with the features at each
    location is added to the logit there. The projection term lets the score depend
    on whether the target fits the conditions.

    Parameters
    ----------
    in_channels : int
        Channels of ``inputs``; 0 for conditional generation without input fields.
    target_channels : int
        Channels of the real or generated ``target``.
    n_conditions : int
        Number of scalar conditions per sample; 0 for no projection term.
    base_channels : int
        Channels after the first convolution.
    n_layers : int
        Number of stride-2 convolutions; the total stride is ``2**n_layers``.
    periodic : bool
        Circular padding (periodic domain) if True, zero padding otherwise.

    Examples
    --------
    >>> discriminator = PatchDiscriminator(2, 1, n_conditions=3)
    >>> inputs, target = torch.randn(4, 2, 16, 16), torch.randn(4, 1, 16, 16)
    >>> discriminator(inputs, torch.randn(4, 3), target).shape
    torch.Size([4, 1, 2, 2])
    """

    def __init__(
        self,
        in_channels: int,
        target_channels: int,
        n_conditions: int,
        *,
        base_channels: int = 32,
        n_layers: int = 3,
        periodic: bool = True,
    ) -> None:
        super().__init__()
        _check_arguments(
            in_channels, target_channels, n_conditions, base_channels, n_layers
        )
        self.in_channels = in_channels
        self.target_channels = target_channels
        self.n_conditions = n_conditions
        self.n_layers = n_layers
        self.total_stride = 2**n_layers
        self.use_increment = in_channels >= target_channels

        # strided feature extractor
        width = in_channels + target_channels * (2 if self.use_increment else 1)
        layers: list[nn.Module] = []
        for i in range(n_layers):
            next_width = base_channels * 2 ** min(i, 3)
            conv = conv2d(width, next_width, stride=2, periodic=periodic)
            layers += [spectral_norm(conv), nn.LeakyReLU(0.2)]
            width = next_width
        layers += [spectral_norm(conv2d(width, width, periodic=periodic))]
        layers += [nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.to_logits = spectral_norm(nn.Conv2d(width, 1, kernel_size=1))

        # projection of the conditions onto the features
        self.condition_embedding: nn.Sequential | None = None
        if n_conditions > 0:
            self.condition_embedding = nn.Sequential(
                spectral_norm(nn.Linear(n_conditions, width)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Linear(width, width)),
            )

        n_parameters = sum(p.numel() for p in self.parameters())
        logger.debug("PatchDiscriminator with %d parameters", n_parameters)

    def forward(
        self, inputs: Tensor, conditions: Tensor | None, target: Tensor
    ) -> Tensor:
        """Score the patches of ``target`` given ``inputs`` and ``conditions``.

        Parameters
        ----------
        inputs : Tensor
            Input fields `(B, in_channels, H, W)`, with H, W >= ``2**n_layers``.
        conditions : Tensor or None
            Normalized conditions `(B, n_conditions)`; None or `(B, 0)` when
            ``n_conditions == 0``.
        target : Tensor
            Real or generated fields `(B, target_channels, H, W)`.

        Returns
        -------
        Tensor
            Patch logits `(B, 1, ceil(H / 2**n_layers), ceil(W / 2**n_layers))`;
            higher means more likely real.

        Raises
        ------
        TypeError
            If ``inputs`` or ``target`` is not a tensor.
        ValueError
            If a shape does not match the model or the grid is smaller than
            ``2**n_layers`` along an axis.
        """
        self._check_shapes(inputs, conditions, target)
        parts = [inputs, target]
        if self.use_increment:
            parts.append(target - inputs[:, -self.target_channels :])
        features = self.features(torch.cat(parts, dim=1))
        logits = self.to_logits(features)
        if self.condition_embedding is not None:
            embedding = self.condition_embedding(conditions)
            projection = (embedding[:, :, None, None] * features).sum(
                dim=1, keepdim=True
            )
            logits = logits + projection
        return logits

    def _check_shapes(
        self, inputs: Tensor, conditions: Tensor | None, target: Tensor
    ) -> None:
        owner = type(self).__name__
        check_field("inputs", inputs, self.in_channels, owner)
        check_field("target", target, self.target_channels, owner)
        batch_size, _, height, width = inputs.shape
        if target.shape[0] != batch_size or target.shape[2:] != inputs.shape[2:]:
            raise ValueError(
                f"{owner}: target has shape {tuple(target.shape)} and inputs has "
                f"shape {tuple(inputs.shape)}; expected the same batch size and "
                f"spatial size (H, W)."
            )
        check_conditions(conditions, self.n_conditions, batch_size, owner)
        if min(height, width) < self.total_stride:
            raise ValueError(
                f"{owner}: spatial size (H, W) = ({height}, {width}) is smaller than "
                f"the total stride {self.total_stride} = 2**n_layers with "
                f"n_layers={self.n_layers}; use n_layers <= "
                f"{max(min(height, width).bit_length() - 1, 0)} or a larger grid."
            )


def _check_arguments(
    in_channels: int,
    target_channels: int,
    n_conditions: int,
    base_channels: int,
    n_layers: int,
) -> None:
    """Raise ValueError for constructor arguments that cannot build the network."""
    counts = {
        "in_channels": (in_channels, 0),
        "target_channels": (target_channels, 1),
        "n_conditions": (n_conditions, 0),
        "base_channels": (base_channels, 1),
        "n_layers": (n_layers, 1),
    }
    for name, (value, minimum) in counts.items():
        if value < minimum:
            raise ValueError(
                f"PatchDiscriminator: invalid {name}={value}, expected an integer "
                f">= {minimum}."
            )
