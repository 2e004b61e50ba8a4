"""The adversarial training loop: discriminator and generator updates, EMA, resume."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from surrogates.data import EpochSampler, StepDataset, make_loader
from surrogates.training import checkpoint as ckpt
from surrogates.training.ema import ema_model
from surrogates.training.losses import (
    adversarial_losses,
    ensemble_crps_loss,
    reconstruction_loss,
)
from surrogates.training.options import TrainingOptions
from surrogates.training.rng import (
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from surrogates.training.scalars import ScalarWriter

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN or inf."""


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
        Checkpoints go to ``run_dir/checkpoints``, scalars to ``run_dir/logs``.
    options
        Loss weights, optimizer settings, budget.
    device
        Where the models and batches live.
    meta
        Extra JSON metadata stored in every checkpoint (model arguments, task,
        normalization, layout, split), so that a checkpoint alone rebuilds the model.
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
    ) -> None:
        self.options = options
        self.device = torch.device(device)
        self.run_dir = Path(run_dir)
        self.meta = dict(meta or {})
        seed_everything(options.seed)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.ema = ema_model(self.generator, options.ema_decay)
        self.optimizer_g = torch.optim.Adam(
            self.generator.parameters(), lr=options.lr_generator, betas=options.betas
        )
        self.optimizer_d = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=options.lr_discriminator,
            betas=options.betas,
        )
        self.loss_d_fn, self.loss_g_fn = adversarial_losses(options.adversarial_loss)
        self.dataset = train_dataset
        self.sampler = EpochSampler(len(train_dataset), seed=options.seed)
        self.steps_per_epoch = len(train_dataset) // options.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size={options.batch_size} exceeds the {len(train_dataset)} "
                "training samples; lower batch_size or add trajectories"
            )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.last_scalars: dict[str, float] = {}

    # losses

    def _discriminator_step(self, inputs, conditions, targets) -> dict[str, float]:
        with torch.no_grad():
            fake = self.generator(inputs, conditions)
        logits_real = self.discriminator(inputs, conditions, targets)
        logits_fake = self.discriminator(inputs, conditions, fake)
        loss_d = self.loss_d_fn(logits_real, logits_fake)
        self._backward_and_step(loss_d, self.optimizer_d, self.discriminator, "loss_d")
        return {
            "train/loss_d": loss_d.item(),
            "train/logits_real": logits_real.mean().item(),
            "train/logits_fake": logits_fake.mean().item(),
        }

    def _generator_step(self, inputs, conditions, targets) -> dict[str, float]:
        opts = self.options
        n_samples = opts.n_ensemble_train if opts.crps_weight > 0 else 1
        repeated = [
            x.repeat(n_samples, *([1] * (x.ndim - 1))) for x in (inputs, conditions)
        ]
        fakes = self.generator(*repeated)
        samples = fakes.view(n_samples, *targets.shape)
        fake = samples[0]
        loss_rec = reconstruction_loss(fake, targets, opts.reconstruction_loss)
        loss_g = opts.reconstruction_weight * loss_rec
        scalars = {"train/loss_rec": loss_rec.item()}
        if opts.crps_weight > 0:
            loss_crps = ensemble_crps_loss(samples, targets)
            loss_g = loss_g + opts.crps_weight * loss_crps
            scalars["train/loss_crps"] = loss_crps.item()
        if opts.adversarial_weight > 0:
            logits = self.discriminator(*repeated, fakes)
            loss_adv = self.loss_g_fn(logits)
            loss_g = loss_g + opts.adversarial_weight * loss_adv
            scalars["train/loss_adv"] = loss_adv.item()
        self._backward_and_step(loss_g, self.optimizer_g, self.generator, "loss_g")
        scalars["train/loss_g"] = loss_g.item()
        return scalars

    def _backward_and_step(self, loss, optimizer, model, name: str) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{name} is {loss.item()} at step {self.step}; lower the learning "
                "rate or the adversarial weight, or check the data for outliers"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.options.grad_clip_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if not torch.isfinite(norm):
            raise NonFiniteLossError(
                f"gradient norm of {name} is {norm.item()} at step {self.step}; "
                "lower the learning rate or set grad_clip_norm"
            )
        optimizer.step()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Run one discriminator and one generator update on a batch."""
        inputs = batch["inputs"].to(self.device, non_blocking=True)
        conditions = batch["conditions"].to(self.device, non_blocking=True)
        targets = batch["targets"].to(self.device, non_blocking=True)
        scalars: dict[str, float] = {}
        if self.options.adversarial_weight > 0:
            for _ in range(self.options.n_discriminator_steps):
                scalars.update(self._discriminator_step(inputs, conditions, targets))
        scalars.update(self._generator_step(inputs, conditions, targets))
        self.ema.update_parameters(self.generator)
        return scalars

    # loop

    def _loader(self):
        self.sampler.set_position(
            self.epoch, self.batch_in_epoch * self.options.batch_size
        )
        return make_loader(
            self.dataset,
            batch_size=self.options.batch_size,
            sampler=self.sampler,
            num_workers=self.options.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            seed=self.options.seed + self.epoch,
        )

    def fit(self, *, resume: bool = False) -> dict[str, float]:
        """Train until ``max_steps`` or the time budget; checkpoint at the end.

        Returns the scalars of the last logged step.
        """
        opts = self.options
        if resume:
            self.resume()
        writer = ScalarWriter(self.run_dir / "logs")
        start = time.perf_counter()
        progress = tqdm(
            total=opts.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        log.info("training from step %d to %d", self.step, opts.max_steps)
        try:
            while self.step < opts.max_steps and not self._out_of_time(start):
                for batch in self._loader():
                    scalars = self.train_step(batch)
                    self.step += 1
                    self.batch_in_epoch += 1
                    progress.update()
                    self._after_step(scalars, writer, progress)
                    if self.step >= opts.max_steps or self._out_of_time(start):
                        break
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        finally:
            progress.close()
            writer.close()
        self.save()
        elapsed = time.perf_counter() - start
        log.info("trained %d steps in %.1f s", self.step, elapsed)
        return self.last_scalars

    def _out_of_time(self, start: float) -> bool:
        budget = self.options.time_budget_s
        return budget is not None and time.perf_counter() - start >= budget

    def _after_step(self, scalars, writer, progress) -> None:
        opts = self.options
        if self.step % opts.log_every == 0 or self.step == 1:
            self.last_scalars = scalars
            writer.write(self.step, scalars)
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in scalars.items()}
            progress.set_postfix(shown, refresh=False)
            log.debug("step %d: %s", self.step, scalars)
        if self.step % opts.checkpoint_every == 0:
            self.save()

    # checkpoints

    def save(self) -> Path:
        """Write a checkpoint of the current step."""
        state = {
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "rng": capture_rng_state(),
            "counters": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
            },
        }
        weights = {
            "generator": self.generator.state_dict(),
            "ema": self.ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
        }
        meta = {
            **self.meta,
            "training": self.options.to_dict(),
            "last_scalars": self.last_scalars,
            "versions": {"torch": torch.__version__},
        }
        return ckpt.save_checkpoint(
            self.run_dir / "checkpoints",
            self.step,
            weights=weights,
            state=state,
            meta=meta,
            keep=self.options.keep_checkpoints,
        )

    def resume(self) -> bool:
        """Load the latest checkpoint of ``run_dir`` if there is one."""
        path = ckpt.latest_checkpoint(self.run_dir / "checkpoints")
        if path is None:
            log.info("no checkpoint in %s; starting from scratch", self.run_dir)
            return False
        loaded = ckpt.load_checkpoint(path)
        self.generator.load_state_dict(loaded.weights["generator"])
        self.ema.load_state_dict(loaded.weights["ema"])
        self.discriminator.load_state_dict(loaded.weights["discriminator"])
        self.optimizer_g.load_state_dict(loaded.state["optimizer_g"])
        self.optimizer_d.load_state_dict(loaded.state["optimizer_d"])
        restore_rng_state(loaded.state["rng"])
        counters = loaded.state["counters"]
        self.step = int(counters["step"])
        self.epoch = int(counters["epoch"])
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        self.last_scalars = loaded.meta.get("last_scalars", {})
        log.info("resumed from %s at step %d", path, self.step)
        return True
