"""Training loop: exact resume, EMA across resume, NaN stop."""

from __future__ import annotations

import pytest
import torch
from datafiles import TASK, TINY_MODEL, canonical_layout

from surrogates.models import PatchDiscriminator, UNetGenerator
from surrogates.training import (
    NonFiniteLossError,
    Trainer,
    TrainingOptions,
    load_checkpoint,
    model_arguments,
    prepare_data,
)
from surrogates.training.rng import seed_everything


def make_trainer(canonical_file, run_dir, **options) -> Trainer:
    data = prepare_data(canonical_layout(canonical_file), TASK)
    arguments = model_arguments(data, TINY_MODEL)
    seed_everything(0)
    defaults = {"batch_size": 4, "checkpoint_every": 1000, "log_every": 1}
    return Trainer(
        UNetGenerator(**arguments["generator"]),
        PatchDiscriminator(**arguments["discriminator"]),
        data.dataset("train"),
        run_dir,
        TrainingOptions(**{**defaults, **options}),
        meta={"model": arguments},
    )


def test_resume_matches_straight_run(canonical_file, tmp_path):
    # 6 + 6 steps with a resume in between must equal 12 straight steps. The
    # training set has 30 samples, so batch 4 crosses an epoch boundary mid-run.
    straight = make_trainer(canonical_file, tmp_path / "straight", max_steps=12)
    straight.fit()

    first = make_trainer(canonical_file, tmp_path / "resumed", max_steps=6)
    first.fit()
    torch.manual_seed(12345)  # a resumed run must not depend on the caller's RNG
    second = make_trainer(canonical_file, tmp_path / "resumed", max_steps=12)
    second.fit(resume=True)

    assert second.step == 12
    for name in ("generator", "discriminator", "ema"):
        expected = getattr(straight, name).state_dict()
        actual = getattr(second, name).state_dict()
        for key, value in expected.items():
            torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)
    assert second.last_scalars == straight.last_scalars


def test_ema_counter_survives_resume(canonical_file, tmp_path):
    trainer = make_trainer(canonical_file, tmp_path, max_steps=3)
    trainer.fit()
    saved = load_checkpoint(tmp_path)
    assert int(saved.weights["ema"]["n_averaged"]) == 3
    resumed = make_trainer(canonical_file, tmp_path, max_steps=5)
    resumed.fit(resume=True)
    assert int(resumed.ema.n_averaged) == 5


def test_ema_differs_from_raw_weights(canonical_file, tmp_path):
    trainer = make_trainer(canonical_file, tmp_path, max_steps=4, ema_decay=0.9)
    trainer.fit()
    raw = dict(trainer.generator.named_parameters())
    averaged = dict(trainer.ema.module.named_parameters())
    differs = [not torch.equal(raw[k], averaged[k]) for k in raw]
    assert any(differs)


def test_nan_loss_stops_with_step_and_name(canonical_file, tmp_path):
    trainer = make_trainer(canonical_file, tmp_path, max_steps=3)
    with torch.no_grad():
        next(trainer.discriminator.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss_d is nan at step 0"):
        trainer.fit()


def test_baseline_skips_discriminator(canonical_file, tmp_path):
    trainer = make_trainer(
        canonical_file, tmp_path, max_steps=2, adversarial_weight=0.0
    )
    before = [p.clone() for p in trainer.discriminator.parameters()]
    scalars = trainer.fit()
    after = list(trainer.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert "train/loss_d" not in scalars


def test_crps_term_is_logged(canonical_file, tmp_path):
    trainer = make_trainer(
        canonical_file, tmp_path, max_steps=1, crps_weight=1.0, n_ensemble_train=2
    )
    scalars = trainer.fit()
    assert "train/loss_crps" in scalars
    assert torch.isfinite(torch.tensor(scalars["train/loss_crps"]))
