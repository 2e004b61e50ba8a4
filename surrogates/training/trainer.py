"""The adversarial training loop: discriminator and generator updates, EMA, resume."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surrogates.data import StepDataset
from surrogates.data.masking import MaskedOutput
from surrogates.training import checkpoint as ckpt
from surrogates.training.batches import BatchStream
from surrogates.training.ema import ema_model, update_ema
from surrogates.training.health import BATCH_KEYS, HealthMonitor, fixed_batch
from surrogates.training.losses import (
    adversarial_losses,
    ensemble_crps_loss,
    reconstruction_loss,
)
from surrogates.training.monitor import TrainingMonitor
from surrogates.training.options import TrainingOptions
from surrogates.training.penalties import DiscriminatorPenalties
from surrogates.training.physics import physics_terms_for
from surrogates.training.precision import Precision, forward_function
from surrogates.training.rng import seed_everything
from surrogates.training.state import restore_trainer, roll_back, trainer_state
from surrogates.training.temporal import temporal_adversary
from surrogates.training.unroll import (
    feedback_steps_input,
    target_states,
    unrolled_generator_loss,
)
from surrogates.training.updates import (
    NetworkUpdate,
    NonFiniteLossError,
    discriminator_update,
)

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "Trainer"]


class Trainer:
    """Train a conditional generator against a patch discriminator.

    Parameters
    ----------
    generator
        Maps ``(inputs (B, C_in, H, W), conditions (B, n_conditions))`` to
        ``(B, C_out, H, W)``, drawing its own noise.
    discriminator
        Maps ``(inputs, conditions, target)`` to patch logits.
    train_dataset
        Normalized step samples of the training split.
    run_dir
        Checkpoints go to ``run_dir/checkpoints``, scalars and images to
        ``run_dir/logs``.
    options
        Loss weights, optimizer settings, budget, health checks, precision.
    device
        Where the models and batches live.
    meta
        Extra JSON metadata stored in every checkpoint (model arguments, task,
        normalization, layout, split), so that a checkpoint alone rebuilds the model.
    valid_dataset
        Samples from which the fixed batch of the health checks and images is
        taken; the training samples when None or empty.
    temporal_discriminator
        Maps ``(context, conditions, states)``, windows of consecutive states
        `(B, T, C, H, W)`, to patch logits; required when ``temporal_weight > 0``
        and unused otherwise.

    Raises
    ------
    ValueError
        If ``batch_size`` exceeds the training samples, or the precision is not
        available on ``device``. With ``unroll_steps > 1`` or ``temporal_weight >
        0``, also if ``train_dataset.task`` is missing, does not feed outputs back
        as inputs or has fewer than ``unroll_steps`` output steps, or if the
        temporal discriminator is missing.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        train_dataset: StepDataset,
        run_dir: Path | str,
        options: TrainingOptions,
        *,
        device: torch.device | str = "cpu",
        meta: dict[str, Any] | None = None,
        valid_dataset: StepDataset | None = None,
        temporal_discriminator: nn.Module | None = None,
    ) -> None:
        self.options = options
        self.device = torch.device(device)
        self.run_dir = Path(run_dir)
        self.meta = dict(meta or {})
        self.precision = Precision(options.precision, self.device)
        seed_everything(options.seed)

        # networks, their forward functions and updates
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.ema = ema_model(self.generator, options.ema_decay)
        # Outputs are 0.0 at masked points, as the normalized data are there.
        mask = getattr(train_dataset, "mask", None)
        self.mask = None if mask is None else mask.to(self.device)
        self.run_generator = forward_function(
            self.generator, "generator", options.compile
        )
        if self.mask is not None:
            self.run_generator = MaskedOutput(self.run_generator, self.mask)
        self.run_discriminator = forward_function(
            self.discriminator, "discriminator", options.compile
        )
        self.optimizer_g, self.update_g = self._make_optimizer("loss_g", self.generator)
        self.optimizer_d, self.update_d = self._make_optimizer(
            "loss_d", self.discriminator
        )

        # losses
        self.loss_d_fn, self.loss_g_fn = adversarial_losses(options.adversarial_loss)
        self.penalties = DiscriminatorPenalties(options)
        self.physics = physics_terms_for(options, train_dataset)
        self.n_steps_input = feedback_steps_input(train_dataset, options)
        self.temporal = temporal_adversary(self, temporal_discriminator)

        # data, health checks and logging
        self.dataset = train_dataset
        self.batches = BatchStream(
            train_dataset,
            batch_size=options.batch_size,
            seed=options.seed,
            num_workers=options.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        sample_source = train_dataset
        if valid_dataset is not None and len(valid_dataset) > 0:
            sample_source = valid_dataset
        batch = fixed_batch(sample_source, options.health_batch_size)
        self.fixed_batch = {k: v.to(self.device) for k, v in batch.items()}
        self.health = HealthMonitor(options, self.fixed_batch, mask=self.mask)
        self.monitor = TrainingMonitor(self)
        self.step = 0
        self.last_scalars: dict[str, float] = {}
        self._saved_step: int | None = None

    def _make_optimizer(self, name: str, model: nn.Module):
        opts = self.options
        rate = opts.lr_generator if name == "loss_g" else opts.lr_discriminator
        optimizer = torch.optim.Adam(model.parameters(), lr=rate, betas=opts.betas)
        scaler = self.precision.grad_scaler()
        update = NetworkUpdate(name, model, optimizer, scaler, opts.grad_clip_norm)
        return optimizer, update

    @property
    def epoch(self) -> int:
        """Epoch of the next training batch."""
        return self.batches.epoch

    @property
    def batch_in_epoch(self) -> int:
        """Index within its epoch of the next training batch."""
        return self.batches.batch_in_epoch

    # updates

    def _unpack(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch[key].to(self.device, non_blocking=True) for key in BATCH_KEYS]

    def _discriminator_step(self, inputs, conditions, targets) -> dict[str, float]:
        with torch.no_grad(), self.precision.autocast():
            fake = self.run_generator(inputs, conditions).float()
        return discriminator_update(
            self._judge,
            self.update_d,
            self.loss_d_fn,
            self.penalties,
            (inputs, conditions, targets, fake),
            step=self.step,
            autocast=self.precision.autocast,
        )

    def _judge(self, inputs, conditions, states) -> torch.Tensor:
        with self.precision.autocast():
            return self.run_discriminator(inputs, conditions, states).float()

    def _generator_step(self, batch) -> dict[str, float]:
        if self.options.feeds_back:
            loss_g, scalars = unrolled_generator_loss(
                self, *self._unpack_sequence(batch)
            )
        else:
            loss_g, scalars = self._one_step_generator_loss(*self._unpack(batch))
        self.update_g.apply(loss_g, self.step)
        scalars["train/loss_g"] = loss_g.item()
        return scalars

    def _one_step_generator_loss(self, inputs, conditions, targets):
        opts = self.options
        n_samples = opts.n_ensemble_train if opts.crps_weight > 0 else 1
        repeated = [
            x.repeat(n_samples, *([1] * (x.ndim - 1))) for x in (inputs, conditions)
        ]
        with self.precision.autocast():
            fakes = self.run_generator(*repeated).float()
        samples = fakes.view(n_samples, *targets.shape)
        loss_g, scalars = self._generator_terms(samples, targets, inputs)
        if opts.adversarial_weight > 0:
            with self.precision.autocast():
                logits = self.run_discriminator(*repeated, fakes).float()
            loss_adv = self.loss_g_fn(logits)
            loss_g = loss_g + opts.adversarial_weight * loss_adv
            scalars["train/loss_adv"] = loss_adv.item()
        return loss_g, scalars

    def _generator_terms(self, samples, targets, inputs):
        opts = self.options
        fake = samples[0]
        loss_rec = reconstruction_loss(
            fake, targets, opts.reconstruction_loss, mask=self.mask
        )
        loss_g = opts.reconstruction_weight * loss_rec
        scalars = {"train/loss_rec": loss_rec.item()}
        if opts.crps_weight > 0:
            loss_crps = ensemble_crps_loss(samples, targets, mask=self.mask)
            loss_g = loss_g + opts.crps_weight * loss_crps
            scalars["train/loss_crps"] = loss_crps.item()
        if self.physics.active:
            loss_physics, physics_scalars = self.physics(fake, targets, inputs)
            loss_g = loss_g + loss_physics
            scalars.update(physics_scalars)
        return loss_g, scalars

    def train_step(
        self, batches: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor]
    ) -> dict[str, float]:
        """Update the discriminator once per batch, then the generator on the last.

        ``batches`` is one batch or a sequence of them, each with ``inputs``,
        ``conditions`` and ``targets`` (and ``target_sequence`` `(B, T, C_out, H,
        W)` with ``unroll_steps > 1``); without a discriminator to train only the
        last is used. Each batch updates the one-step discriminator (when
        ``adversarial_weight > 0``) and then the temporal one (when
        ``temporal_weight > 0``).
        """
        if isinstance(batches, Mapping):
            batches = [batches]
        scalars: dict[str, float] = {}
        if self._trains_discriminators:
            for batch in batches:
                scalars.update(self._discriminator_steps(batch))
        scalars.update(self._generator_step(batches[-1]))
        update_ema(self.ema, self.generator)
        return scalars

    @property
    def _trains_discriminators(self) -> bool:
        return self.options.adversarial_weight > 0 or self.temporal is not None

    def _discriminator_steps(self, batch) -> dict[str, float]:
        scalars: dict[str, float] = {}
        if self.options.adversarial_weight > 0:
            scalars.update(self._discriminator_step(*self._unpack(batch)))
        if self.temporal is not None:
            scalars.update(
                self.temporal.discriminator_step(*self._unpack_sequence(batch))
            )
        return scalars

    def _unpack_sequence(self, batch) -> list[torch.Tensor]:
        # inputs, conditions and the (B, unroll_steps, C_out, H, W) targets
        inputs, conditions, _ = self._unpack(batch)
        targets = target_states(batch, self.options.unroll_steps)
        return [inputs, conditions, targets.to(self.device, non_blocking=True)]

    def _next_batches(self) -> list[dict[str, torch.Tensor]]:
        adversarial = self._trains_discriminators
        count = self.options.n_discriminator_steps if adversarial else 1
        return [self.batches.next() for _ in range(count)]

    # loop

    def fit(self, *, resume: bool = False) -> dict[str, float]:
        """Train until ``max_steps`` or the time budget; checkpoint at the end.

        Returns the scalars of the last logged step.
        """
        opts = self.options
        if resume:
            self.resume()
        first_step = self.step
        start = time.perf_counter()
        # With a time budget the step count at the end is unknown, so the bar shows
        # steps and rate without a misleading percentage of max_steps.
        progress = tqdm(
            total=None if opts.time_budget_s is not None else opts.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        self.monitor.open()
        log.info("training from step %d to %d", self.step, opts.max_steps)
        try:
            while self.step < opts.max_steps and not self._out_of_time(start):
                scalars = self.train_step(self._next_batches())
                self.step += 1
                progress.update()
                if self.monitor.after_step(scalars, progress) and self.rollback():
                    progress.n = self.step
                    continue
                if self.step % opts.checkpoint_every == 0:
                    self.save()
        finally:
            self.batches.close()
            self.dataset.source.close()  # no HDF5 handle outlives training
            progress.close()
            self.monitor.close()
        if self._saved_step != self.step:
            self.save()
        elapsed = time.perf_counter() - start
        log.info(
            "trained %d steps in %.1f s, now at step %d",
            self.step - first_step,
            elapsed,
            self.step,
        )
        return self.last_scalars

    def _out_of_time(self, start: float) -> bool:
        budget = self.options.time_budget_s
        return budget is not None and time.perf_counter() - start >= budget

    # checkpoints

    def save(self) -> Path:
        """Write a checkpoint of the current step."""
        weights, state = trainer_state(self)
        meta = {
            **self.meta,
            "training": self.options.to_dict(),
            "last_scalars": self.last_scalars,
            "versions": {"torch": torch.__version__},
        }
        path = ckpt.save_checkpoint(
            self.run_dir / "checkpoints",
            self.step,
            weights=weights,
            state=state,
            meta=meta,
            keep=self.options.keep_checkpoints,
        )
        self._saved_step = self.step
        return path

    def resume(self) -> bool:
        """Load the latest checkpoint of ``run_dir`` if there is one."""
        path = ckpt.latest_checkpoint(self.run_dir / "checkpoints")
        if path is None:
            log.info("no checkpoint in %s; starting from scratch", self.run_dir)
            return False
        restore_trainer(self, ckpt.load_checkpoint(path))
        self._saved_step = self.step
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def rollback(self) -> bool:
        """Return to the last checkpoint and lower both learning rates.

        See :func:`~surrogates.training.state.roll_back`; returns False when
        ``max_rollbacks`` rollbacks were already made.
        """
        return roll_back(self)
