"""Neural networks of the conditional GAN surrogates.

`UNetGenerator` maps input fields `(B, in_channels, H, W)`, conditions
`(B, n_conditions)` and noise to output fields `(B, out_channels, H, W)`.
`PatchDiscriminator` maps inputs, conditions and a real or generated target to
patch logits `(B, 1, h, w)`. This package imports nothing from the rest of
`surrogates`.
"""

from surrogates.models.discriminator import PatchDiscriminator
from surrogates.models.generator import UNetGenerator

__all__ = ["PatchDiscriminator", "UNetGenerator"]
