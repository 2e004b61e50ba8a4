"""Building blocks and input checks shared by the generator and the discriminator.

Every convolution takes ``periodic``. With ``periodic=True`` it pads circularly, so a
network built from these blocks is translation-equivariant on the periodic domain
(up to the subsampling of its strided layers). With ``periodic=False`` it pads with
zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    periodic: bool = True,
) -> nn.Conv2d:
    """Build a 2D convolution with "same" padding, circular when ``periodic``.

    With an odd ``kernel_size``, stride 1 keeps ``(H, W)`` and stride 2 halves even
    sizes.
    """
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        padding_mode="circular" if periodic else "zeros",
    )


class ConditionEmbedding(nn.Module):
    """MLP that maps normalized conditions `(B, n_conditions)` to `(B, embedding_dim)`.

    The output passes through SiLU, so a linear layer reading it (a FiLM layer) can
    start at zero and still receive gradients.
    """

    def __init__(self, n_conditions: int, embedding_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_conditions, embedding_dim),
            nn.SiLU(),
            nn.Linear(embedding_dim, embedding_dim),
            nn.SiLU(),
        )

    def forward(self, conditions: Tensor) -> Tensor:
        return self.mlp(conditions)


class ResidualBlock(nn.Module):
    """Residual block GroupNorm-SiLU-conv, GroupNorm-FiLM-SiLU-dropout-conv.

    FiLM multiplies the second normalized activation by ``1 + scale`` and adds
    ``shift``, with ``(scale, shift)`` a linear map of the condition embedding. That
    linear map starts at zero, so every block starts with identity modulation. With
    ``embedding_dim=0`` the block has no FiLM layer and ignores the embedding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        embedding_dim: int,
        periodic: bool,
        norm_groups: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = conv2d(in_channels, out_channels, periodic=periodic)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv2d(out_channels, out_channels, periodic=periodic)

        # identity modulation at initialization
        self.film: nn.Linear | None = None
        if embedding_dim > 0:
            self.film = nn.Linear(embedding_dim, 2 * out_channels)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

        self.skip: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.skip = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor, embedding: Tensor | None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
            h = h * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: `(B, C_in, H, W)` -> `(B, C_out, H/2, W/2)`."""

    def __init__(self, in_channels: int, out_channels: int, *, periodic: bool) -> None:
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, stride=2, periodic=periodic)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 followed by a 3x3 convolution.

    Interpolation followed by a convolution avoids the checkerboard artifacts of
    transposed convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, *, periodic: bool) -> None:
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, periodic=periodic)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EncoderLevel(nn.Module):
    """U-Net encoder level: optional downsampling, noise injection, residual blocks."""

    def __init__(
        self,
        blocks: list[ResidualBlock],
        downsample: Downsample | None,
        noise_projection: nn.Conv2d | None,
        pool_factor: int,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.noise_projection = noise_projection
        self.pool_factor = pool_factor
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, embedding: Tensor | None, noise: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.noise_projection is not None:
            # average pooling over p x p cells divides the standard deviation of
            # white noise by p, so multiplying by p restores unit variance
            pooled = F.avg_pool2d(noise, self.pool_factor) * self.pool_factor
            x = x + self.noise_projection(pooled)
        for block in self.blocks:
            x = block(x, embedding)
        return x


class DecoderLevel(nn.Module):
    """U-Net decoder level: residual blocks on [features, skip], optional upsampling."""

    def __init__(self, blocks: list[ResidualBlock], upsample: Upsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.upsample = upsample

    def forward(self, x: Tensor, skip: Tensor, embedding: Tensor | None) -> Tensor:
        x = torch.cat([x, skip], dim=1)
        for block in self.blocks:
            x = block(x, embedding)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


def check_field(name: str, tensor: Tensor, n_channels: int, owner: str) -> None:
    """Raise TypeError or ValueError unless ``tensor`` is `(B, n_channels, H, W)`."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"{owner}: {name} must be a torch.Tensor of shape (B, {n_channels}, H, W), "
            f"got {type(tensor).__name__}."
        )
    if tensor.ndim != 4 or tensor.shape[1] != n_channels:
        raise ValueError(
            f"{owner}: {name} has shape {tuple(tensor.shape)}, expected "
            f"(B, {n_channels}, H, W) with {n_channels} channels; pass {name} in "
            f"that layout or build the model with the matching channel count."
        )


def check_conditions(
    conditions: Tensor | None, n_conditions: int, batch_size: int, owner: str
) -> None:
    """Raise ValueError unless ``conditions`` has shape `(batch_size, n_conditions)`.

    ``None`` is accepted only when ``n_conditions == 0``.
    """
    if conditions is None:
        if n_conditions == 0:
            return
        raise ValueError(
            f"{owner}: conditions is None, but the model was built with "
            f"n_conditions={n_conditions}; pass a tensor of shape "
            f"(B, {n_conditions})."
        )
    expected = (batch_size, n_conditions)
    if tuple(conditions.shape) != expected:
        raise ValueError(
            f"{owner}: conditions has shape {tuple(conditions.shape)}, expected "
            f"{expected} (batch size, n_conditions={n_conditions}); pass one row of "
            f"{n_conditions} normalized conditions per sample."
        )
