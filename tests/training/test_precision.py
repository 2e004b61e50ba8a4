"""Mixed precision, loss scaling and torch.compile with its eager fallback."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from surrogates.models import PatchDiscriminator
from surrogates.training.penalties import gradient_penalty, r1_penalty
from surrogates.training.precision import CompiledForward, Precision
from surrogates.training.updates import NetworkUpdate, NonFiniteLossError

PRECISION = "surrogates.training.precision"


def test_bf16_step_on_cpu_is_finite(make_trainer):
    trainer = make_trainer(max_steps=1, precision="bf16")
    batch = trainer.fixed_batch
    inputs = batch["inputs"], batch["conditions"], batch["targets"]
    with trainer.precision.autocast():
        logits = trainer.discriminator(*inputs)
    scalars = trainer.fit()
    assert logits.dtype == torch.bfloat16
    assert scalars
    for name, value in scalars.items():
        assert math.isfinite(value), name


def test_fp16_wgan_steps_on_cpu_are_finite(make_trainer, caplog):
    with caplog.at_level(logging.WARNING, logger=PRECISION):
        trainer = make_trainer(
            max_steps=3,
            precision="fp16",
            adversarial_loss="wgan",
            gradient_penalty_weight=10.0,
            r1_weight=1.0,
        )
    assert "float16 arithmetic is slow on CPUs" in caplog.text
    scalars = trainer.fit()
    assert trainer.update_d.scaler.is_enabled()
    assert trainer.update_d.loss_scale() > 1.0
    for name, value in scalars.items():
        assert math.isfinite(value), name


@pytest.mark.parametrize("name", ["wgan-gp", "r1"])
def test_fp16_penalty_with_loss_scale_matches_fp32(name):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(1, 1, 1, base_channels=8, n_layers=2)
    inputs, real, fake = (torch.randn(4, 1, 16, 16) for _ in range(3))
    conditions = torch.randn(4, 1)

    def penalty(**kwargs):
        torch.manual_seed(1)  # the same mixing weights for WGAN-GP
        if name == "r1":
            return r1_penalty(discriminator, inputs, conditions, real, **kwargs)
        return gradient_penalty(discriminator, inputs, conditions, real, fake, **kwargs)

    reference = penalty()
    fp16 = Precision("fp16", "cpu")
    scaled = penalty(loss_scale=2.0**16, autocast=fp16.autocast)
    assert torch.isfinite(scaled)
    torch.testing.assert_close(scaled, reference, rtol=2e-2, atol=1e-6)


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="expected one of"):
        Precision("fp8", "cpu")


def test_fp32_has_no_autocast_or_scaling():
    precision = Precision("fp32", "cpu")
    with precision.autocast():
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.float32
    assert not precision.grad_scaler().is_enabled()


def make_update(scaler, max_skipped_steps=10):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    return NetworkUpdate("loss_d", model, optimizer, scaler, None, max_skipped_steps)


def test_scaled_update_equals_plain_update():
    plain = make_update(torch.amp.GradScaler("cpu", enabled=False))
    scaled = make_update(torch.amp.GradScaler("cpu", init_scale=2.0**10))
    inputs = torch.randn(4, 3)
    for update in (plain, scaled):
        update.apply(update.model(inputs).pow(2).mean(), step=0)
    assert scaled.loss_scale() == 2.0**10
    for a, b in zip(plain.model.parameters(), scaled.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_scaled_update_skips_then_raises_on_nan():
    update = make_update(torch.amp.GradScaler("cpu", init_scale=2.0**10), 3)
    before = [p.clone() for p in update.model.parameters()]
    loss = update.model(torch.randn(4, 3)).mean() * float("nan")
    update.apply(loss, step=0)
    update.apply(update.model(torch.randn(4, 3)).mean() * float("nan"), step=1)
    after = list(update.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert update.loss_scale() == 2.0**8
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps up to step 2"):
        update.apply(update.model(torch.randn(4, 3)).mean() * float("nan"), step=2)


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    def failing_compile(module):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = nn.Linear(3, 2)
    forward = CompiledForward(model, "generator")
    inputs = torch.randn(4, 3)
    with caplog.at_level(logging.WARNING, logger=PRECISION):
        output = forward(inputs)
        forward(inputs)
    messages = [r.getMessage() for r in caplog.records if r.name == PRECISION]
    torch.testing.assert_close(output, model(inputs), rtol=0, atol=0)
    assert not forward.compiled
    assert messages == [
        "torch.compile of the generator failed, so it runs in eager mode: "
        "RuntimeError: no C++ compiler found"
    ]


def test_compile_option_keeps_state_dict_keys(make_trainer, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module: module)
    trainer = make_trainer(max_steps=1, compile=True)
    trainer.fit()
    assert isinstance(trainer.run_generator, CompiledForward)
    assert not any("_orig_mod" in key for key in trainer.generator.state_dict())


def test_spectral_norm_discriminator_stays_eager(make_trainer, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module: module)
    trainer = make_trainer(compile=True)
    assert trainer.run_discriminator is trainer.discriminator


@pytest.mark.slow
def test_compile_on_cpu_runs_or_falls_back(make_trainer, caplog):
    trainer = make_trainer(max_steps=2, compile=True, adversarial_loss="wgan")
    with caplog.at_level(logging.WARNING, logger=PRECISION):
        scalars = trainer.fit()
    messages = [r.getMessage() for r in caplog.records if r.name == PRECISION]
    for name, value in scalars.items():
        assert math.isfinite(value), name
    if trainer.run_generator.compiled:
        assert messages == []
    else:
        assert messages[0].startswith("torch.compile of the generator failed")
