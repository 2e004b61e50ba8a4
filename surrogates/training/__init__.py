"""Adversarial training of conditional generators, with checkpoints and resume."""

from surrogates.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from surrogates.training.device import resolve_device
from surrogates.training.options import TrainingOptions
from surrogates.training.pipeline import (
    PreparedData,
    model_arguments,
    prepare_data,
    train_surrogate,
)
from surrogates.training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "NonFiniteLossError",
    "PreparedData",
    "Trainer",
    "TrainingOptions",
    "load_checkpoint",
    "model_arguments",
    "prepare_data",
    "resolve_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "train_surrogate",
]
