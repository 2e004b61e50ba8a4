"""Trainer features: batches per discriminator step, EMA buffers, images, state."""

from __future__ import annotations

import logging

import pytest
import torch
from datafiles import TASK, TINY_MODEL, canonical_layout, write_canonical_file
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from surrogates.training import load_checkpoint, prepare_data, train_surrogate
from surrogates.training.batches import BatchStream
from surrogates.training.ema import ema_model, update_ema


class SpectralGenerator(nn.Module):
    """A generator whose last layer is spectrally normalized."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.head = spectral_norm(nn.Conv2d(4, 1, kernel_size=1))

    def forward(self, inputs):
        return self.head(torch.relu(self.conv(inputs)))


def test_ema_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    generator = SpectralGenerator()
    ema = ema_model(generator, decay=0.9, warmup=1)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        generator(torch.randn(2, 1, 8, 8)).pow(2).mean().backward()
        optimizer.step()
        update_ema(ema, generator)
    state = ema.state_dict()
    buffers = dict(generator.named_buffers())
    parameters = dict(generator.named_parameters())
    assert int(state["n_averaged"]) == 3
    for name in (
        "head.parametrizations.weight.0._u",
        "head.parametrizations.weight.0._v",
    ):
        # the current power-iteration vector, not an average of unit vectors
        torch.testing.assert_close(
            state[f"module.{name}"], buffers[name], rtol=0, atol=0
        )
    averaged = state["module.head.parametrizations.weight.original"]
    current = parameters["head.parametrizations.weight.original"]
    assert not torch.equal(averaged, current)


def test_ema_of_default_generator_holds_no_buffers(make_trainer):
    trainer = make_trainer(max_steps=1)
    keys = set(trainer.ema.state_dict())
    parameters = {f"module.{n}" for n, _ in trainer.generator.named_parameters()}
    assert keys == parameters | {"n_averaged"}


def test_discriminator_steps_take_new_batches(make_trainer):
    trainer = make_trainer(max_steps=1, n_discriminator_steps=3)
    seen = []
    step = trainer._discriminator_step

    def record(inputs, conditions, targets):
        seen.append(targets.clone())
        return step(inputs, conditions, targets)

    trainer._discriminator_step = record
    trainer.fit()
    assert trainer.batch_in_epoch == 3
    assert len(seen) == 3
    assert not torch.equal(seen[0], seen[1])
    assert not torch.equal(seen[1], seen[2])


def test_baseline_takes_one_batch_per_step(make_trainer):
    trainer = make_trainer(max_steps=2, n_discriminator_steps=3, adversarial_weight=0)
    trainer.fit()
    assert trainer.batch_in_epoch == 2


def test_stream_position_wraps_to_next_epoch(make_trainer):
    dataset = make_trainer().dataset
    stream = BatchStream(dataset, batch_size=4, seed=0)
    stream.set_position(2, stream.steps_per_epoch)
    assert (stream.epoch, stream.batch_in_epoch) == (3, 0)
    for _ in range(stream.steps_per_epoch):
        stream.next()
    assert (stream.epoch, stream.batch_in_epoch) == (4, 0)


def test_sample_images_written(make_trainer, tmp_path):
    trainer = make_trainer(max_steps=2, image_every=2)
    trainer.fit()
    image = tmp_path / "run" / "logs" / "images" / "step_2.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (image.parent / "step_1.png").exists()


def test_sample_images_reach_tensorboard(make_trainer, tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    trainer = make_trainer(max_steps=1, image_every=1)
    trainer.fit()
    events = accumulator.EventAccumulator(
        str(tmp_path / "run" / "logs" / "tensorboard")
    )
    events.Reload()
    assert events.Tags()["images"] == ["valid/samples"]


def test_final_checkpoint_not_written_twice(make_trainer, caplog):
    trainer = make_trainer(max_steps=2, checkpoint_every=2)
    with caplog.at_level(logging.INFO, logger="surrogates.training.checkpoint"):
        trainer.fit()
    saved = [r for r in caplog.records if r.getMessage().startswith("saved checkpoint")]
    assert len(saved) == 1


def test_checkpoint_holds_scalers_and_health(make_trainer, tmp_path):
    trainer = make_trainer(max_steps=1)
    trainer.fit()
    state = load_checkpoint(tmp_path / "run").state
    assert state["scaler_g"] == {}
    assert state["health"] == {
        "n_discriminator_wins": 0,
        "n_temporal_discriminator_wins": 0,
        "n_collapsed": 0,
        "n_rollbacks": 0,
    }


def test_resume_from_checkpoint_without_new_entries(make_trainer, tmp_path):
    trainer = make_trainer(max_steps=1)
    path = trainer.save()
    state = torch.load(path / "state.pt", weights_only=True)
    for key in ("scaler_g", "scaler_d", "health"):
        del state[key]
    torch.save(state, path / "state.pt")
    resumed = make_trainer(max_steps=2)
    resumed.fit(resume=True)
    assert resumed.step == 2


def test_fixed_batch_from_validation_split(make_trainer, canonical_file):
    trainer = make_trainer()
    valid = prepare_data(canonical_layout(canonical_file), TASK).dataset("valid")
    batch = trainer.fixed_batch
    assert batch["inputs"].shape == (4, 1, 16, 16)
    assert batch["targets"].shape == (4, 1, 16, 16)
    torch.testing.assert_close(batch["targets"][0], valid[0]["targets"], rtol=0, atol=0)


def test_resume_with_other_data_warns(tmp_path, caplog):
    path = tmp_path / "waves.h5"
    write_canonical_file(path, n_trajectories=6)
    arguments = {
        "layout": canonical_layout(path),
        "task": TASK,
        "model": TINY_MODEL,
        "run_dir": tmp_path / "run",
    }
    train_surrogate(**arguments, training={"max_steps": 1, "batch_size": 4})
    write_canonical_file(path, n_trajectories=8)
    with caplog.at_level(logging.WARNING, logger="surrogates.training.pipeline"):
        train_surrogate(
            **arguments, training={"max_steps": 2, "batch_size": 4}, resume=True
        )
    assert "with other data than it was trained on" in caplog.text
    assert "n_trajectories 6 -> 8" in caplog.text
