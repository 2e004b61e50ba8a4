"""Unrolled training and the temporal discriminator: losses, checkpoints, resume."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from datafiles import TASK, TINY_MODEL, canonical_layout

from surrogates.data import StepTask
from surrogates.models import (
    PatchDiscriminator,
    TemporalDiscriminator,
    UNetGenerator,
    autoregressive_rollout,
)
from surrogates.training import (
    NonFiniteLossError,
    Trainer,
    TrainingOptions,
    load_checkpoint,
    model_arguments,
    prepare_data,
    train_surrogate,
)
from surrogates.training.penalties import gradient_penalty, r1_penalty
from surrogates.training.pipeline import task_for_training
from surrogates.training.rng import seed_everything
from surrogates.training.unroll import (
    check_feedback_task,
    step_weights,
    target_states,
    unrolled_generator_loss,
)

DEFAULTS = {
    "batch_size": 4,
    "checkpoint_every": 1000,
    "log_every": 1,
    "health_batch_size": 4,
    "health_n_draws": 2,
}


def build_trainer(data_file, run_dir, model=None, **values) -> Trainer:
    """The tiny model on the canonical file, with the task the options need."""
    options = TrainingOptions(**{**DEFAULTS, **values})
    data = prepare_data(canonical_layout(data_file), task_for_training(TASK, options))
    window = options.temporal_window if options.temporal_weight > 0 else 0
    arguments = model_arguments(data, model or TINY_MODEL, temporal_window=window)
    seed_everything(0)
    generator = UNetGenerator(**arguments["generator"])
    discriminator = PatchDiscriminator(**arguments["discriminator"])
    temporal = None
    if window:
        temporal = TemporalDiscriminator(**arguments["temporal_discriminator"])
    return Trainer(
        generator,
        discriminator,
        data.dataset("train"),
        run_dir,
        options,
        meta={"model": arguments},
        temporal_discriminator=temporal,
    )


def first_batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    dataset = trainer.dataset
    samples = [dataset[i] for i in range(4)]
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


# options and task checks


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("unroll_steps", 0),
        ("unroll_discount", 0.0),
        ("temporal_window", 1),
        ("temporal_weight", -0.1),
        ("lr_temporal_discriminator", 0.0),
    ],
)
def test_invalid_option_named(name, value):
    with pytest.raises(ValueError, match=f"{name}={value}"):
        TrainingOptions(**{name: value})


def test_step_weights_discounted():
    weights = step_weights(0.5, 3)
    torch.testing.assert_close(
        torch.tensor(weights), torch.tensor([4.0, 2.0, 1.0]) / 7.0, rtol=1e-6, atol=0
    )


def test_feedback_needs_inputs_as_outputs():
    task = StepTask(input_fields=("u", "v"), output_fields=("v",))
    with pytest.raises(ValueError, match=r"include \['u'\]"):
        check_feedback_task(task, TrainingOptions(unroll_steps=2))


def test_single_steps_skip_feedback_check():
    task = StepTask(input_fields=("u", "v"), output_fields=("v",))
    check_feedback_task(task, TrainingOptions())


def test_temporal_window_longer_than_states():
    task = StepTask(input_fields=("u",), output_fields=("u",))
    options = TrainingOptions(temporal_weight=0.1, temporal_window=3)
    with pytest.raises(ValueError, match="set unroll_steps >= 2"):
        check_feedback_task(task, options)


def test_task_gets_output_steps():
    task = task_for_training(TASK, TrainingOptions(unroll_steps=3))
    assert task["n_steps_output"] == 3


def test_default_task_unchanged():
    assert task_for_training(TASK, TrainingOptions()) == dict(TASK)


def test_missing_target_sequence_named():
    batch = {"targets": torch.zeros(2, 1, 8, 8)}
    with pytest.raises(ValueError, match="n_steps_output >= 2"):
        target_states(batch, 2)


def test_trainer_rejects_short_dataset(canonical_file, tmp_path):
    data = prepare_data(canonical_layout(canonical_file), TASK)
    arguments = model_arguments(data, TINY_MODEL)
    with pytest.raises(ValueError, match="n_steps_output=1"):
        Trainer(
            UNetGenerator(**arguments["generator"]),
            PatchDiscriminator(**arguments["discriminator"]),
            data.dataset("train"),
            tmp_path,
            TrainingOptions(**DEFAULTS, unroll_steps=2),
        )


# rollout


def test_rollout_feeds_outputs_back():
    # a "generator" that returns twice the newest state and the sum of the window
    def step(window, conditions):
        return 2.0 * window[:, -1:] + window.sum(dim=1, keepdim=True)

    inputs = torch.arange(2.0).view(1, 2, 1, 1)  # states 0 and 1, oldest first
    states = autoregressive_rollout(step, inputs, None, 3)
    # windows [0, 1] -> 3, [1, 3] -> 10, [3, 10] -> 33
    expected = torch.tensor([3.0, 10.0, 33.0]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(states, expected, rtol=0, atol=0)


def test_rollout_rejects_zero_steps():
    with pytest.raises(ValueError, match="n_steps=0"):
        autoregressive_rollout(lambda x, c: x, torch.zeros(1, 1, 2, 2), None, 0)


# losses and gradients


def test_one_step_unroll_matches_single_step(canonical_file, tmp_path):
    # The unrolled loss with one step must equal the single-step loss exactly,
    # with every generator term on, the same random noise and the same
    # power-iteration state of the discriminator's spectral normalization.
    values = {
        "crps_weight": 0.5,
        "spectral_weight": 0.1,
        "mean_conservation_weight": 0.1,
    }
    trainer = build_trainer(canonical_file, tmp_path, **values)
    batch = first_batch(trainer)
    inputs, conditions, targets = batch["inputs"], batch["conditions"], batch["targets"]
    saved = copy.deepcopy(trainer.discriminator.state_dict())
    torch.manual_seed(3)
    expected, expected_scalars = trainer._one_step_generator_loss(
        inputs, conditions, targets
    )
    trainer.discriminator.load_state_dict(saved)
    torch.manual_seed(3)
    actual, scalars = unrolled_generator_loss(
        trainer, inputs, conditions, targets[:, None]
    )
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    for key, value in expected_scalars.items():
        assert scalars[key] == value, key


def test_defaults_take_single_step_path(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path / "run", max_steps=2)
    scalars = trainer.fit()
    assert trainer.temporal is None
    assert "train/loss_rec_step_1" not in scalars


def test_two_step_loss_differs(canonical_file, tmp_path, deterministic_model):
    trainer = build_trainer(
        canonical_file, tmp_path, model=deterministic_model, unroll_steps=2
    )
    batch = first_batch(trainer)
    inputs, conditions = batch["inputs"], batch["conditions"]
    sequence = batch["target_sequence"]
    one_step, _ = unrolled_generator_loss(trainer, inputs, conditions, sequence[:, :1])
    two_steps, scalars = unrolled_generator_loss(trainer, inputs, conditions, sequence)
    assert torch.isfinite(two_steps)
    assert not torch.equal(one_step, two_steps)
    assert scalars["train/loss_rec_step_2"] != scalars["train/loss_rec_step_1"]


def test_second_step_reaches_first_prediction(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path, unroll_steps=2)
    predictions = []
    generator = trainer.run_generator

    def record(*args):
        output = generator(*args)
        output.retain_grad()
        predictions.append(output)
        return output

    trainer.run_generator = record
    batch = first_batch(trainer)
    loss_g, _ = unrolled_generator_loss(
        trainer, batch["inputs"], batch["conditions"], batch["target_sequence"]
    )
    first, second = predictions
    target = batch["target_sequence"][:, 1]
    (gradient,) = torch.autograd.grad(
        (second - target).abs().mean(), first, retain_graph=True
    )
    assert gradient.abs().sum() > 0
    loss_g.backward()
    norms = [
        p.grad.norm() for p in trainer.generator.parameters() if p.grad is not None
    ]
    assert norms
    assert all(torch.isfinite(n) for n in norms)


def test_unrolled_fit_logs_finite_losses(canonical_file, tmp_path):
    trainer = build_trainer(
        canonical_file, tmp_path, max_steps=3, unroll_steps=2, crps_weight=0.5
    )
    scalars = trainer.fit()
    for key in ("train/loss_g", "train/loss_d", "train/loss_rec_step_2"):
        assert torch.isfinite(torch.tensor(scalars[key])), key


def test_nan_temporal_loss_stops_training(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path, max_steps=2, temporal_weight=0.1)
    with torch.no_grad():
        for parameter in trainer.temporal.discriminator.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss_d_temporal is nan at step 0"):
        trainer.fit()


# temporal discriminator

TEMPORAL = {"temporal_weight": 0.1, "temporal_window": 3, "unroll_steps": 2}


def windows(batch_size: int = 3, n_context: int = 1, n_states: int = 2):
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(batch_size, n_context, 2, 16, 16, generator=generator)
    states = torch.randn(batch_size, n_states, 2, 16, 16, generator=generator)
    conditions = torch.randn(batch_size, 1, generator=generator)
    return context, conditions, states


def assert_same_state(expected: dict, actual: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)


# the network


@pytest.mark.parametrize("n_context", [0, 1, 2])
def test_output_shape_any_split(n_context):
    discriminator = TemporalDiscriminator(2, 3, 1, base_channels=8, n_layers=2)
    context, conditions, states = windows(n_context=n_context, n_states=3 - n_context)
    assert discriminator(context, conditions, states).shape == (3, 1, 4, 4)


def test_wrong_window_length_rejected():
    discriminator = TemporalDiscriminator(2, 3, 1, base_channels=8, n_layers=2)
    context, conditions, states = windows(n_context=2, n_states=2)
    with pytest.raises(ValueError, match="do not form one window"):
        discriminator(context, conditions, states)


def test_flat_states_rejected():
    discriminator = TemporalDiscriminator(2, 2, 1, base_channels=8, n_layers=2)
    context, conditions, states = windows(n_states=1)
    with pytest.raises(ValueError, match=r"\(B, T, 2, H, W\)"):
        discriminator(context, conditions, states.flatten(1, 2))


def test_window_of_one_rejected():
    with pytest.raises(ValueError, match="window=1"):
        TemporalDiscriminator(2, 1, 1)


def test_order_of_states_matters():
    discriminator = TemporalDiscriminator(2, 3, 1, base_channels=8, n_layers=2)
    context, conditions, states = windows()
    forward = discriminator(context, conditions, states)
    swapped = discriminator(context, conditions, states.flip(1))
    assert not torch.allclose(forward, swapped, rtol=1e-4, atol=1e-6)


def test_gradient_penalties_reach_parameters():
    discriminator = TemporalDiscriminator(2, 3, 1, base_channels=8, n_layers=2)
    context, conditions, real = windows()
    fake = real + 0.5 * torch.randn_like(real)
    penalty = gradient_penalty(discriminator, context, conditions, real, fake)
    penalty = penalty + r1_penalty(discriminator, context, conditions, real)
    assert torch.isfinite(penalty)
    assert penalty > 0
    penalty.backward()
    gradients = [p.grad for p in discriminator.parameters() if p.grad is not None]
    assert gradients
    assert any(g.abs().sum() > 0 for g in gradients)


# training


def test_fit_logs_temporal_losses(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path, max_steps=2, **TEMPORAL)
    scalars = trainer.fit()
    for key in (
        "train/loss_d_temporal",
        "train/loss_temporal_adv",
        "train/temporal_logits_real",
    ):
        assert torch.isfinite(torch.tensor(scalars[key])), key


def test_temporal_without_adversarial_term(canonical_file, tmp_path):
    # The one-step discriminator stays untouched; the temporal one trains.
    trainer = build_trainer(
        canonical_file,
        tmp_path,
        max_steps=2,
        adversarial_weight=0.0,
        temporal_weight=0.1,
    )
    before = [p.clone() for p in trainer.discriminator.parameters()]
    scalars = trainer.fit()
    after = list(trainer.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert "train/loss_d" not in scalars
    assert "train/loss_d_temporal" in scalars


def test_trainer_needs_temporal_network(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path, max_steps=1)
    with pytest.raises(ValueError, match=r"temporal_weight=0\.1 needs a temporal"):
        type(trainer)(
            trainer.generator,
            trainer.discriminator,
            trainer.dataset,
            tmp_path,
            type(trainer.options)(temporal_weight=0.1),
        )


def test_rollback_lowers_temporal_rate(canonical_file, tmp_path):
    trainer = build_trainer(
        canonical_file, tmp_path, lr_temporal_discriminator=1e-3, **TEMPORAL
    )
    assert trainer.rollback()
    assert trainer.temporal.update.learning_rate == pytest.approx(5e-4, rel=1e-12)


# checkpoints and resume


def test_checkpoint_round_trip(canonical_file, tmp_path):
    trainer = build_trainer(canonical_file, tmp_path / "run", max_steps=2, **TEMPORAL)
    trainer.fit()
    loaded = load_checkpoint(tmp_path / "run")
    expected = trainer.temporal.discriminator.state_dict()
    assert_same_state(expected, loaded.weights["temporal_discriminator"])
    assert "optimizer_temporal" in loaded.state

    restored = build_trainer(canonical_file, tmp_path / "run", **TEMPORAL)
    restored.resume()
    actual = restored.temporal.discriminator.state_dict()
    assert_same_state(expected, actual)
    optimizer = restored.temporal.optimizer.state_dict()["state"]
    original = trainer.temporal.optimizer.state_dict()["state"]
    for index, values in original.items():
        assert_same_state(values, optimizer[index])


def test_resume_without_temporal_network_rejected(canonical_file, tmp_path):
    build_trainer(canonical_file, tmp_path, max_steps=1, unroll_steps=2).fit()
    trainer = build_trainer(canonical_file, tmp_path, max_steps=2, **TEMPORAL)
    with pytest.raises(ValueError, match="has no temporal discriminator"):
        trainer.fit(resume=True)


def test_resume_without_temporal_weight_warns(canonical_file, tmp_path, caplog):
    build_trainer(canonical_file, tmp_path, max_steps=1, **TEMPORAL).fit()
    trainer = build_trainer(canonical_file, tmp_path, max_steps=2, unroll_steps=2)
    with caplog.at_level(logging.WARNING, logger="surrogates.training.state"):
        trainer.fit(resume=True)
    assert "has a trained temporal discriminator" in caplog.text
    assert trainer.step == 2


def test_resume_matches_straight_run(canonical_file, tmp_path):
    # 4 + 4 steps with a resume in between must equal 8 straight steps. With two
    # output steps the training set has 24 samples, so batch 4 crosses an epoch
    # boundary; WGAN-GP draws interpolation weights at every update.
    values = {**TEMPORAL, "adversarial_loss": "wgan", "crps_weight": 0.5}
    straight = build_trainer(canonical_file, tmp_path / "a", max_steps=8, **values)
    straight.fit()
    build_trainer(canonical_file, tmp_path / "b", max_steps=4, **values).fit()
    torch.manual_seed(12345)  # a resumed run must not depend on the caller's RNG
    resumed = build_trainer(canonical_file, tmp_path / "b", max_steps=8, **values)
    resumed.fit(resume=True)

    assert resumed.step == 8
    for name in ("generator", "discriminator", "ema"):
        expected = getattr(straight, name).state_dict()
        assert_same_state(expected, getattr(resumed, name).state_dict())
    assert_same_state(
        straight.temporal.discriminator.state_dict(),
        resumed.temporal.discriminator.state_dict(),
    )
    assert resumed.last_scalars == straight.last_scalars


def test_train_surrogate_builds_temporal_run(canonical_file, tmp_path):
    training = {"max_steps": 1, "batch_size": 4, "health_batch_size": 4, **TEMPORAL}
    path = train_surrogate(
        layout=canonical_layout(canonical_file),
        task=TASK,
        model=TINY_MODEL,
        training=training,
        run_dir=tmp_path,
        device="cpu",
    )
    loaded = load_checkpoint(path)
    assert loaded.meta["task"]["n_steps_output"] == 2
    arguments = loaded.meta["model"]["temporal_discriminator"]
    assert arguments["window"] == 3
    assert arguments["n_layers"] == TINY_MODEL["discriminator"]["n_layers"]
    assert "temporal_discriminator" in loaded.weights


def test_train_surrogate_rejects_missing_output_field(canonical_file, tmp_path):
    task = {**TASK, "input_fields": ["vorticity", "extra"]}
    with pytest.raises(ValueError, match=r"include \['extra'\]"):
        train_surrogate(
            layout=canonical_layout(canonical_file),
            task=task,
            model=TINY_MODEL,
            training={"unroll_steps": 2},
            run_dir=tmp_path,
            device="cpu",
        )
