"""One thread per test and a factory of small trainers on the canonical file."""

from __future__ import annotations

import pytest
import torch
from datafiles import TASK, TINY_MODEL, canonical_layout

from surrogates.models import PatchDiscriminator, UNetGenerator
from surrogates.training import (
    Trainer,
    TrainingOptions,
    model_arguments,
    prepare_data,
)
from surrogates.training.rng import seed_everything

DEFAULTS = {
    "batch_size": 4,
    "checkpoint_every": 1000,
    "log_every": 1,
    "health_batch_size": 4,
    "health_n_draws": 2,
}


@pytest.fixture(autouse=True)
def _one_thread():
    # The tiny models gain nothing from a second thread, and OpenMP threads that
    # wait for a core taken by another process slow training tens of times.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_trainer(canonical_file, tmp_path):
    """Return ``make(run_dir=None, model=None, **options) -> Trainer``.

    The tiny test model on the canonical file, batch size 4, logging every step and
    no periodic checkpoint, unless ``options`` override these.
    """

    def make(run_dir=None, model=None, **options) -> Trainer:
        data = prepare_data(canonical_layout(canonical_file), TASK)
        arguments = model_arguments(data, model or TINY_MODEL)
        seed_everything(0)
        return Trainer(
            UNetGenerator(**arguments["generator"]),
            PatchDiscriminator(**arguments["discriminator"]),
            data.dataset("train"),
            run_dir or tmp_path / "run",
            TrainingOptions(**{**DEFAULTS, **options}),
            meta={"model": arguments},
            valid_dataset=data.dataset("valid"),
        )

    return make


@pytest.fixture
def deterministic_model() -> dict:
    """The tiny test model with a generator that draws no noise."""
    generator = {**TINY_MODEL["generator"], "noise_channels": 0}
    return {**TINY_MODEL, "generator": generator}
