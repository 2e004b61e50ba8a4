"""Neural networks of the conditional GAN surrogates.

`UNetGenerator` maps input fields `(B, in_channels, H, W)`, conditions
`(B, n_conditions)` and noise to output fields `(B, out_channels, H, W)`.
`PatchDiscriminator` maps inputs, conditions and a real or generated target to
patch logits `(B, 1, h, w)`. `TemporalDiscriminator` maps a window of consecutive
states `(B, window, C, H, W)` and conditions to patch logits.
`autoregressive_rollout` feeds a generator's outputs back as its inputs. This
package imports nothing from the rest of `surrogates`.
"""

from surrogates.models.discriminator import PatchDiscriminator
from surrogates.models.generator import UNetGenerator
from surrogates.models.rollout import autoregressive_rollout
from surrogates.models.temporal import TemporalDiscriminator

__all__ = [
    "PatchDiscriminator",
    "TemporalDiscriminator",
    "UNetGenerator",
    "autoregressive_rollout",
]
