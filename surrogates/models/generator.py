"""Conditional 2D U-Net generator with FiLM conditioning and multi-scale noise."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from surrogates.models.layers import (
    ConditionEmbedding,
    DecoderLevel,
    Downsample,
    EncoderLevel,
    ResidualBlock,
    Upsample,
    check_conditions,
    check_field,
    conv2d,
)

logger = logging.getLogger(__name__)


class UNetGenerator(nn.Module):
    """Conditional 2D U-Net that maps input fields, conditions and noise to fields.

    Level ``i`` works at resolution ``(H / 2**i, W / 2**i)`` with
    ``base_channels * channel_multipliers[i]`` channels. Each level has
    ``n_blocks_per_level`` residual blocks (GroupNorm, SiLU) in the encoder and in the
    decoder, joined by skip connections, and one more block links encoder and
    decoder at the coarsest level. Strided convolutions downsample, and
    nearest-neighbour interpolation followed by a convolution upsamples. Conditions
    modulate every residual block through FiLM, which starts as the identity. Noise
    is concatenated to the inputs at the first convolution and, average-pooled to
    each coarser level, added to the features through a learned 1x1 projection.

    Parameters
    ----------
    in_channels : int
        Channels of ``inputs``, e.g. ``n_steps_input * n_fields``. 0 for
        generation from conditions and noise only, with ``inputs`` of shape
        `(B, 0, H, W)` giving the grid size, ``residual=False`` and
        ``noise_channels >= 1``.
    out_channels : int
        Channels of the output fields.
    n_conditions : int
        Number of scalar conditions per sample; 0 for an unconditional network.
    base_channels : int
        Channels at the finest level. Compute grows about quadratically with it.
        On 2 CPU threads (torch 2.13, 2-core AMD EPYC virtual machine) one forward
        and backward pass of a `(16, 4, 64, 64)` batch took 0.17 s with 8 and
        1.2 s with 32 (``test_step_time_report`` in the test suite).
    channel_multipliers : sequence of int
        Channel multiplier per level; its length is the number of levels.
    n_blocks_per_level : int
        Residual blocks per level, in the encoder and again in the decoder.
    noise_channels : int
        Channels of the noise; 0 gives a deterministic network.
    periodic : bool
        Circular padding (periodic domain) if True, zero padding otherwise.
    residual : bool
        If True the network predicts an increment that is added to the last
        ``out_channels`` channels of ``inputs``. The last convolution starts at zero,
        so the initial generator returns that state unchanged (persistence).
    norm_groups : int
        Groups of every GroupNorm; must divide ``base_channels``.
    dropout : float
        Dropout probability inside the residual blocks, in [0, 1).

    Raises
    ------
    ValueError
        If a count is out of range, if ``residual`` and ``in_channels <
        out_channels``, or if ``norm_groups`` does not divide the channel counts.

    Examples
    --------
    >>> generator = UNetGenerator(in_channels=2, out_channels=1, n_conditions=3)
    >>> inputs, conditions = torch.randn(4, 2, 32, 32), torch.randn(4, 3)
    >>> generator(inputs, conditions).shape
    torch.Size([4, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_conditions: int,
        *,
        base_channels: int = 8,
        channel_multipliers: Sequence[int] = (1, 2, 4),
        n_blocks_per_level: int = 1,
        noise_channels: int = 4,
        periodic: bool = True,
        residual: bool = True,
        norm_groups: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = [base_channels * m for m in channel_multipliers]
        _check_arguments(
            in_channels,
            out_channels,
            n_conditions,
            channels,
            n_blocks_per_level,
            noise_channels,
            residual,
            norm_groups,
            dropout,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_conditions = n_conditions
        self.noise_channels = noise_channels
        self.residual = residual
        self.size_divisor = 2 ** (len(channels) - 1)

        # condition embedding read by the FiLM layer of every block
        embedding_dim = 4 * base_channels if n_conditions > 0 else 0
        self.condition_embedding: ConditionEmbedding | None = None
        if n_conditions > 0:
            self.condition_embedding = ConditionEmbedding(n_conditions, embedding_dim)

        def make_blocks(
            in_width: int, width: int, n_blocks: int
        ) -> list[ResidualBlock]:
            in_widths = [in_width] + [width] * (n_blocks - 1)
            return [
                ResidualBlock(
                    block_in_width,
                    width,
                    embedding_dim=embedding_dim,
                    periodic=periodic,
                    norm_groups=norm_groups,
                    dropout=dropout,
                )
                for block_in_width in in_widths
            ]

        # encoder
        self.stem = conv2d(in_channels + noise_channels, channels[0], periodic=periodic)
        self.encoder = nn.ModuleList()
        for level, width in enumerate(channels):
            downsample = None
            projection = None
            if level > 0:
                downsample = Downsample(channels[level - 1], width, periodic=periodic)
                if noise_channels > 0:
                    projection = nn.Conv2d(noise_channels, width, kernel_size=1)
            blocks = make_blocks(width, width, n_blocks_per_level)
            self.encoder.append(EncoderLevel(blocks, downsample, projection, 2**level))
        self.middle = make_blocks(channels[-1], channels[-1], 1)[0]

        # decoder, coarsest level first
        self.decoder = nn.ModuleList()
        for level in reversed(range(len(channels))):
            width = channels[level]
            upsample = None
            if level > 0:
                upsample = Upsample(width, channels[level - 1], periodic=periodic)
            blocks = make_blocks(2 * width, width, n_blocks_per_level)
            self.decoder.append(DecoderLevel(blocks, upsample))

        # output head, zero at initialization
        self.head_norm = nn.GroupNorm(norm_groups, channels[0])
        self.head = conv2d(channels[0], out_channels, periodic=periodic)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

        n_parameters = sum(p.numel() for p in self.parameters())
        logger.debug(
            "UNetGenerator with %d parameters, channels %s", n_parameters, channels
        )

    def sample_noise(
        self, inputs: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw standard normal noise `(B, noise_channels, H, W)` for ``inputs``.

        The noise has the device and dtype of ``inputs`` `(B, in_channels, H, W)`.
        ``generator`` makes the draw reproducible and must live on that device.
        """
        batch_size, _, height, width = inputs.shape
        return torch.randn(
            (batch_size, self.noise_channels, height, width),
            generator=generator,
            device=inputs.device,
            dtype=inputs.dtype,
        )

    def forward(
        self, inputs: Tensor, conditions: Tensor | None, noise: Tensor | None = None
    ) -> Tensor:
        """Generate output fields.

        Parameters
        ----------
        inputs : Tensor
            Input fields `(B, in_channels, H, W)`; H and W divisible by
            ``2**(len(channel_multipliers) - 1)``. With ``residual=True`` the last
            ``out_channels`` channels are the state that the output increments.
        conditions : Tensor or None
            Normalized conditions `(B, n_conditions)`; None or `(B, 0)` when
            ``n_conditions == 0``.
        noise : Tensor, optional
            Noise `(B, noise_channels, H, W)`; drawn with ``torch.randn`` if None.

        Returns
        -------
        Tensor
            Output fields `(B, out_channels, H, W)`.

        Raises
        ------
        TypeError
            If ``inputs`` is not a tensor.
        ValueError
            If a shape does not match the model or H, W are not divisible.
        """
        self._check_shapes(inputs, conditions, noise)
        if noise is None:
            noise = self.sample_noise(inputs)
        embedding = None
        if self.condition_embedding is not None:
            embedding = self.condition_embedding(conditions)

        # encoder
        x = inputs
        if self.noise_channels > 0:
            x = torch.cat([inputs, noise], dim=1)
        x = self.stem(x)
        skips = []
        for level in self.encoder:
            x = level(x, embedding, noise)
            skips.append(x)
        x = self.middle(x, embedding)

        # decoder
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = level(x, skip, embedding)
        output = self.head(F.silu(self.head_norm(x)))
        if self.residual:
            output = inputs[:, -self.out_channels :] + output
        return output

    def _check_shapes(
        self, inputs: Tensor, conditions: Tensor | None, noise: Tensor | None
    ) -> None:
        owner = type(self).__name__
        check_field("inputs", inputs, self.in_channels, owner)
        batch_size, _, height, width = inputs.shape
        check_conditions(conditions, self.n_conditions, batch_size, owner)
        divisor = self.size_divisor
        if height % divisor != 0 or width % divisor != 0:
            raise ValueError(
                f"{owner}: inputs has spatial size (H, W) = ({height}, {width}), which "
                f"is not divisible by {divisor} = 2**(len(channel_multipliers) - 1); "
                f"pad the fields to a multiple of {divisor} (circularly for periodic "
                f"fields) or use fewer levels in channel_multipliers."
            )
        expected_noise = (batch_size, self.noise_channels, height, width)
        if noise is not None and tuple(noise.shape) != expected_noise:
            raise ValueError(
                f"{owner}: noise has shape {tuple(noise.shape)}, expected "
                f"{expected_noise} (B, noise_channels, H, W); draw it with "
                f"sample_noise(inputs) or pass noise=None."
            )


def _check_arguments(
    in_channels: int,
    out_channels: int,
    n_conditions: int,
    channels: list[int],
    n_blocks_per_level: int,
    noise_channels: int,
    residual: bool,
    norm_groups: int,
    dropout: float,
) -> None:
    """Raise ValueError for constructor arguments that cannot build a U-Net."""
    counts = {
        "in_channels": (in_channels, 0),
        "out_channels": (out_channels, 1),
        "n_conditions": (n_conditions, 0),
        "n_blocks_per_level": (n_blocks_per_level, 1),
        "noise_channels": (noise_channels, 0),
        "norm_groups": (norm_groups, 1),
    }
    for name, (value, minimum) in counts.items():
        if value < minimum:
            raise ValueError(
                f"UNetGenerator: invalid {name}={value}, expected an integer >= "
                f"{minimum}."
            )
    if in_channels + noise_channels < 1:
        raise ValueError(
            "UNetGenerator: in_channels=0 and noise_channels=0 leave the network "
            "without input; pass noise_channels >= 1 to generate from conditions "
            "and noise only."
        )
    if not channels or min(channels) < 1:
        raise ValueError(
            f"UNetGenerator: level channels {channels} (base_channels times "
            f"channel_multipliers), expected at least one level with positive "
            f"channels; pass base_channels >= 1 and a non-empty "
            f"channel_multipliers of positive integers."
        )
    if residual and in_channels < out_channels:
        raise ValueError(
            f"UNetGenerator: residual=True adds the output to the last out_channels="
            f"{out_channels} channels of the inputs, but in_channels={in_channels}; "
            f"pass residual=False or include the current state in the inputs."
        )
    if any(width % norm_groups for width in channels):
        raise ValueError(
            f"UNetGenerator: norm_groups={norm_groups} does not divide the level "
            f"channels {channels}; choose norm_groups dividing base_channels."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"UNetGenerator: invalid dropout={dropout}, expected a probability in "
            f"[0, 1)."
        )
