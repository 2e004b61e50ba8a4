"""Health checks: ensemble collapse, a winning discriminator, rollback."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from surrogates.training import TrainingOptions
from surrogates.training.health import HealthMonitor

HEALTH = "surrogates.training.health"
STATE = "surrogates.training.state"


def warnings_of(caplog, logger: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and r.levelno == logging.WARNING
    ]


def test_collapse_reported_for_deterministic_generator(
    make_trainer, deterministic_model, caplog
):
    trainer = make_trainer(
        model=deterministic_model,
        max_steps=2,
        health_warmup_steps=0,
        health_patience=2,
    )
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        scalars = trainer.fit()
    messages = warnings_of(caplog, HEALTH)
    assert scalars["train/ensemble_spread"] == 0.0
    assert len(messages) == 1
    assert messages[0].startswith("step 2: the ensemble collapsed")
    assert "health_min_spread=0.001" in messages[0]


def test_noisy_generator_has_spread(make_trainer, caplog):
    trainer = make_trainer(max_steps=3, health_warmup_steps=0, health_min_spread=0)
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        scalars = trainer.fit()
    assert scalars["train/ensemble_spread"] > 0
    assert warnings_of(caplog, HEALTH) == []


def test_collapse_not_checked_during_warmup(make_trainer, deterministic_model, caplog):
    trainer = make_trainer(model=deterministic_model, max_steps=2, health_patience=1)
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        trainer.fit()
    assert warnings_of(caplog, HEALTH) == []


def test_collapse_not_checked_for_baseline(make_trainer, deterministic_model, caplog):
    trainer = make_trainer(
        model=deterministic_model,
        max_steps=2,
        adversarial_weight=0.0,
        health_warmup_steps=0,
        health_patience=1,
    )
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        scalars = trainer.fit()
    assert "train/ensemble_spread" in scalars
    assert warnings_of(caplog, HEALTH) == []


def test_discriminator_win_reported_with_values(make_trainer, caplog):
    trainer = make_trainer(
        max_steps=1,
        health_warmup_steps=0,
        health_patience=1,
        health_logit_margin=-1e9,
        health_min_spread=0.0,
    )
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        scalars = trainer.fit()
    messages = warnings_of(caplog, HEALTH)
    real = f"{scalars['train/logits_real']:.4g}"
    assert len(messages) == 1
    assert messages[0].startswith("step 1: the discriminator wins outright")
    assert f"mean real logit {real}" in messages[0]


class NoisyIdentity(nn.Module):
    """A stand-in generator: its input plus noise."""

    def forward(self, inputs, conditions):
        return inputs + torch.randn_like(inputs)


def test_temporal_discriminator_win_reported(caplog):
    options = TrainingOptions(
        health_warmup_steps=0, health_patience=2, health_logit_margin=1.0
    )
    batch = {
        "inputs": torch.zeros(2, 1, 4, 4),
        "conditions": torch.zeros(2, 0),
        "targets": torch.randn(2, 1, 4, 4),
    }
    monitor = HealthMonitor(options, batch)
    scalars = {
        "train/logits_real": 0.5,
        "train/logits_fake": 0.0,
        "train/temporal_logits_real": 3.0,
        "train/temporal_logits_fake": -1.0,
    }
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        first = monitor.check(1, dict(scalars), NoisyIdentity())
        second = monitor.check(2, dict(scalars), NoisyIdentity())
    messages = warnings_of(caplog, HEALTH)
    assert not first
    assert second
    assert len(messages) == 1
    assert "the temporal discriminator wins outright" in messages[0]
    assert monitor.state_dict()["n_temporal_discriminator_wins"] == 0


def test_wgan_has_no_default_margin(make_trainer, caplog):
    trainer = make_trainer(
        max_steps=1,
        adversarial_loss="wgan",
        health_warmup_steps=0,
        health_patience=1,
        health_min_spread=0.0,
    )
    with caplog.at_level(logging.WARNING, logger=HEALTH):
        trainer.fit()
    assert trainer.health.logit_margin is None
    assert warnings_of(caplog, HEALTH) == []


def test_rollback_restores_weights_and_lowers_rates(make_trainer, caplog):
    trainer = make_trainer(max_steps=2)
    trainer.fit()
    saved = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    for _ in range(2):
        trainer.train_step(trainer._next_batches())
        trainer.step += 1
    changed = trainer.generator.state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in saved.items())

    with caplog.at_level(logging.WARNING, logger=STATE):
        assert trainer.rollback()
    assert trainer.step == 2
    for key, value in saved.items():
        torch.testing.assert_close(
            trainer.generator.state_dict()[key], value, rtol=0, atol=0, msg=key
        )
    assert trainer.optimizer_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert trainer.optimizer_d.param_groups[0]["lr"] == pytest.approx(1e-4)
    messages = warnings_of(caplog, STATE)
    assert len(messages) == 1
    assert "step 4: training is unhealthy; rolled back to step 2" in messages[0]


def test_fit_rolls_back_at_most_max_rollbacks(make_trainer, caplog):
    trainer = make_trainer(
        max_steps=4,
        checkpoint_every=1,
        health_warmup_steps=0,
        health_patience=2,
        health_logit_margin=-1e9,
        health_min_spread=0.0,
        rollback_on_unhealthy=True,
        max_rollbacks=2,
    )
    with caplog.at_level(logging.WARNING, logger=STATE):
        trainer.fit()
    messages = warnings_of(caplog, STATE)
    assert trainer.step == 4
    assert trainer.health.n_rollbacks == 2
    assert sum("rolled back" in m for m in messages) == 2
    assert sum("max_rollbacks=2" in m for m in messages) == 1
    assert trainer.optimizer_g.param_groups[0]["lr"] == pytest.approx(0.5e-4)
    assert trainer.optimizer_d.param_groups[0]["lr"] == pytest.approx(0.5e-4)
