"""Temporal discriminator: a conditional PatchGAN over windows of consecutive states."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from surrogates.models.discriminator import PatchDiscriminator

logger = logging.getLogger(__name__)


class TemporalDiscriminator(nn.Module):
    """Score each patch of a window of consecutive states as real or generated.

    The window of ``window`` states `(B, window, C, H, W)` is split into
    ``context`` (given states, never generated) and ``states`` (real or generated
    ones), so that gradient penalties can differentiate with respect to
    ``states`` alone. The network stacks the whole window along channels together
    with the ``window - 1`` increments between consecutive states, `(B, (2 window
    - 1) C, H, W)`, and judges that stack with a :class:`PatchDiscriminator`
    without input fields. That reuses its spectrally normalized strided
    convolutions and its projection of the conditions.

    Stacking along channels keeps the network as small as the one-step
    discriminator. The intended windows are short (2 to 4 states), where 3-D
    convolutions would add parameters without covering more time. The increments
    give the first layer the temporal differences directly, because drift, flicker
    and damping in a rollout show in those before they show in single states.

    Parameters
    ----------
    state_channels : int
        Channels ``C`` of one state.
    window : int
        Consecutive states per window, at least 2.
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
    >>> discriminator = TemporalDiscriminator(1, 3, n_conditions=2, n_layers=2)
    >>> context, states = torch.randn(4, 1, 1, 16, 16), torch.randn(4, 2, 1, 16, 16)
    >>> discriminator(context, torch.randn(4, 2), states).shape
    torch.Size([4, 1, 4, 4])
    """

    def __init__(
        self,
        state_channels: int,
        window: int,
        n_conditions: int,
        *,
        base_channels: int = 32,
        n_layers: int = 3,
        periodic: bool = True,
    ) -> None:
        super().__init__()
        if window < 2:
            raise ValueError(
                f"TemporalDiscriminator: invalid window={window}, expected an "
                "integer >= 2 (consecutive states per window)."
            )
        if state_channels < 1:
            raise ValueError(
                f"TemporalDiscriminator: invalid state_channels={state_channels}, "
                "expected an integer >= 1."
            )
        self.state_channels = state_channels
        self.window = window
        self.n_conditions = n_conditions
        self.patches = PatchDiscriminator(
            0,
            (2 * window - 1) * state_channels,
            n_conditions,
            base_channels=base_channels,
            n_layers=n_layers,
            periodic=periodic,
        )
        n_parameters = sum(p.numel() for p in self.parameters())
        logger.debug("TemporalDiscriminator with %d parameters", n_parameters)

    def forward(
        self, context: Tensor, conditions: Tensor | None, states: Tensor
    ) -> Tensor:
        """Score the patches of the window ``[context, states]``.

        Parameters
        ----------
        context : Tensor
            Given states `(B, n_context, C, H, W)`, oldest first; ``n_context``
            may be 0.
        conditions : Tensor or None
            Normalized conditions `(B, n_conditions)`; None or `(B, 0)` when
            ``n_conditions == 0``.
        states : Tensor
            Real or generated states `(B, window - n_context, C, H, W)` that
            follow ``context``.

        Returns
        -------
        Tensor
            Patch logits `(B, 1, ceil(H / 2**n_layers), ceil(W / 2**n_layers))`;
            higher means more likely real.

        Raises
        ------
        ValueError
            If the shapes do not form one window of ``window`` states with
            ``state_channels`` channels, or the grid is smaller than
            ``2**n_layers`` along an axis.
        """
        self._check_shapes(context, states)
        sequence = torch.cat([context, states], dim=1)
        increments = sequence[:, 1:] - sequence[:, :-1]
        stacked = torch.cat([sequence.flatten(1, 2), increments.flatten(1, 2)], dim=1)
        no_inputs = stacked.new_zeros((stacked.shape[0], 0, *stacked.shape[2:]))
        return self.patches(no_inputs, conditions, stacked)

    def _check_shapes(self, context: Tensor, states: Tensor) -> None:
        owner = type(self).__name__
        for name, tensor in (("context", context), ("states", states)):
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 5:
                shape = getattr(tensor, "shape", type(tensor).__name__)
                raise ValueError(
                    f"{owner}: {name} is {tuple(shape)}; expected a tensor of shape "
                    f"(B, T, {self.state_channels}, H, W)."
                )
        n_states = context.shape[1] + states.shape[1]
        same = context.shape[0] == states.shape[0] and (
            context.shape[2:] == states.shape[2:]
        )
        if (
            n_states != self.window
            or not same
            or states.shape[2] != self.state_channels
        ):
            raise ValueError(
                f"{owner}: context {tuple(context.shape)} and states "
                f"{tuple(states.shape)} do not form one window; expected "
                f"(B, n_context, {self.state_channels}, H, W) and (B, "
                f"{self.window} - n_context, {self.state_channels}, H, W)."
            )
