"""Unrolled (multi-step) generator losses and the helpers of windows of states.

Unrolled losses and the temporal discriminator (:mod:`surrogates.training.temporal`)
feed the generator's predictions back as its inputs with
:func:`~surrogates.models.autoregressive_rollout`, the function the emulator rolls
out with, so training builds its windows as inference does. States are `(B, T, C, H,
W)` here, oldest first. The flat generator inputs `(B, n_steps_input * C, H, W)` are
viewed as `(B, n_steps_input, C, H, W)` history states.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from surrogates.models import autoregressive_rollout
from surrogates.training.options import TrainingOptions

log = logging.getLogger(__name__)


def check_feedback_task(task, options: TrainingOptions) -> None:
    """Raise ValueError unless ``task`` can feed predictions back as inputs.

    ``task`` is a :class:`~surrogates.data.StepTask`. Nothing is checked when
    ``options`` train on single steps without a temporal discriminator.
    """
    if not options.feeds_back:
        return
    inputs, outputs = tuple(task.input_channel_fields), tuple(task.output_fields)
    if inputs != outputs:
        raise ValueError(
            f"unroll_steps={options.unroll_steps} and temporal_weight="
            f"{options.temporal_weight} feed the generator's outputs {list(outputs)} "
            f"back as its inputs {list(task.input_fields)}, so every input field "
            "must be an output field; set task.output_fields to include "
            f"{sorted(set(inputs) - set(outputs))}, or set unroll_steps: 1 and "
            "temporal_weight: 0"
        )
    longest = task.n_steps_input + options.unroll_steps
    if options.temporal_weight > 0 and options.temporal_window > longest:
        raise ValueError(
            f"temporal_window={options.temporal_window} exceeds the "
            f"n_steps_input={task.n_steps_input} input states plus the "
            f"unroll_steps={options.unroll_steps} generated ones; lower "
            f"temporal_window or set unroll_steps >= "
            f"{options.temporal_window - task.n_steps_input}"
        )


def feedback_steps_input(dataset, options: TrainingOptions) -> int:
    """Check the task of ``dataset`` for ``options`` and return its n_steps_input.

    Without feedback (single steps, no temporal discriminator) a dataset without
    a ``task`` attribute counts as one input step. Raises ValueError as
    :func:`check_feedback_task` does, when the task is missing or when it has
    fewer than ``unroll_steps`` output steps.
    """
    task = getattr(dataset, "task", None)
    if task is None and not options.feeds_back:
        return 1
    if task is None:
        raise ValueError(
            f"unroll_steps={options.unroll_steps} and temporal_weight="
            f"{options.temporal_weight} need the training dataset's task to split "
            f"inputs into states, but {type(dataset).__name__} has no 'task' "
            "attribute; train on a StepDataset or give the dataset a StepTask"
        )
    check_feedback_task(task, options)
    n_steps_output = getattr(task, "n_steps_output", 1)
    if options.unroll_steps > n_steps_output:
        raise ValueError(
            f"unroll_steps={options.unroll_steps} needs that many future states per "
            f"sample, but the training dataset has n_steps_output={n_steps_output}; "
            f"build it with task n_steps_output >= {options.unroll_steps} "
            "(train_surrogate sets it)"
        )
    return task.n_steps_input


def step_weights(discount: float, n_steps: int) -> list[float]:
    """Return the loss weights of ``n_steps`` steps, ``discount**k`` summing to 1."""
    raw = [discount**k for k in range(n_steps)]
    return [w / sum(raw) for w in raw]


def history_states(inputs: Tensor, n_steps_input: int) -> Tensor:
    """View inputs `(B, n_steps_input * C, H, W)` as `(B, n_steps_input, C, H, W)`."""
    batch_size, n_channels = inputs.shape[:2]
    return inputs.view(
        batch_size, n_steps_input, n_channels // n_steps_input, *inputs.shape[2:]
    )


def target_states(batch, n_steps: int) -> Tensor:
    """Return the first ``n_steps`` target states of ``batch``, `(B, n_steps, C, H, W)`.

    Raises
    ------
    ValueError
        If ``batch`` has fewer future states than ``n_steps``.
    """
    if n_steps == 1:
        return batch["targets"].unsqueeze(1)
    sequence = batch.get("target_sequence")
    if sequence is None or sequence.shape[1] < n_steps:
        found = "none" if sequence is None else f"{sequence.shape[1]}"
        raise ValueError(
            f"unroll_steps={n_steps} needs {n_steps} future states per sample in "
            f"the batch key 'target_sequence', found {found}; build the dataset with "
            f"task.n_steps_output >= {n_steps} (train_surrogate sets it)"
        )
    return sequence[:, :n_steps]


def split_window(history: Tensor, future: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Split the last ``window`` states of ``[history, future]`` in two.

    Returns ``(context, states)``: ``states`` is the last ``min(window,
    T_future)`` states of ``future`` and ``context`` the history states before
    them, so a window always ends with the newest generated or target state.
    """
    n_states = min(window, future.shape[1])
    n_context = window - n_states
    context = history[:, history.shape[1] - n_context :]
    return context, future[:, future.shape[1] - n_states :]


def repeat_batch(tensor: Tensor, n_copies: int) -> Tensor:
    """Repeat `(B, ...)` to `(n_copies * B, ...)`, copy after copy."""
    return tensor.repeat(n_copies, *([1] * (tensor.ndim - 1)))


def rollout(trainer, inputs: Tensor, conditions: Tensor, n_steps: int) -> Tensor:
    """Roll the trainer's generator out, `(B, n_steps, C, H, W)` in float32."""

    def step(window: Tensor, step_conditions: Tensor) -> Tensor:
        with trainer.precision.autocast():
            return trainer.run_generator(window, step_conditions).float()

    return autoregressive_rollout(step, inputs, conditions, n_steps)


def unrolled_generator_loss(
    trainer, inputs: Tensor, conditions: Tensor, targets: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Return the generator's loss over a rollout as long as ``targets``.

    The rollout keeps its graph, so the loss of step ``k`` reaches the generator
    through every earlier prediction. Each step's terms are those of a one-step
    update (reconstruction, CRPS, physics, and the one-step discriminator's
    adversarial term on the window that step read), weighted by
    :func:`step_weights` with ``unroll_discount``. The temporal discriminator's
    term is added once, on the window ending with the last prediction.
    ``targets`` is `(B, n_steps, C, H, W)`; training passes ``unroll_steps``
    steps.
    """
    opts = trainer.options
    n_samples = opts.n_ensemble_train if opts.crps_weight > 0 else 1
    batch_size = inputs.shape[0]
    repeated_inputs = repeat_batch(inputs, n_samples)
    repeated_conditions = repeat_batch(conditions, n_samples)
    n_steps = targets.shape[1]
    fakes = rollout(trainer, repeated_inputs, repeated_conditions, n_steps)
    n_in = trainer.n_steps_input
    history = history_states(repeated_inputs, n_in)
    sequence = torch.cat([history, fakes], dim=1)

    # per-step terms, weighted
    loss_g = fakes.new_zeros(())
    scalars: dict[str, float] = {}
    for k, weight in enumerate(step_weights(opts.unroll_discount, n_steps)):
        window = sequence[:, k : k + n_in].flatten(1, 2)
        samples = fakes[:, k].reshape(n_samples, batch_size, *fakes.shape[2:])
        loss_k, scalars_k = trainer._generator_terms(
            samples, targets[:, k], window[:batch_size]
        )
        if opts.adversarial_weight > 0:
            with trainer.precision.autocast():
                logits = trainer.run_discriminator(
                    window, repeated_conditions, fakes[:, k]
                ).float()
            loss_adv = trainer.loss_g_fn(logits)
            loss_k = loss_k + opts.adversarial_weight * loss_adv
            scalars_k["train/loss_adv"] = loss_adv.item()
        loss_g = loss_g + weight * loss_k
        for key, value in scalars_k.items():
            scalars[key] = scalars.get(key, 0.0) + weight * value
        scalars[f"train/loss_rec_step_{k + 1}"] = scalars_k["train/loss_rec"]

    # temporal adversarial term
    if trainer.temporal is not None:
        loss_temporal = trainer.temporal.generator_loss(
            history, repeated_conditions, fakes
        )
        loss_g = loss_g + opts.temporal_weight * loss_temporal
        scalars["train/loss_temporal_adv"] = loss_temporal.item()
    return loss_g, scalars
