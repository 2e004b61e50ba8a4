"""Reports of a trainer after each step: scalars, health checks, sample images."""

from __future__ import annotations

import logging

from surrogates.data.masking import fill_masked
from surrogates.training.health import draw_samples
from surrogates.training.scalars import ScalarWriter

log = logging.getLogger(__name__)


class TrainingMonitor:
    """Log scalars, run health checks and write sample images for a trainer.

    Scalars and health checks run on step 1 and every ``log_every`` steps. Images of
    the fixed batch, drawn from the EMA generator, go to
    ``run_dir/logs/images/step_<n>.png`` and to TensorBoard every ``image_every``
    steps (never when 0).
    """

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.writer: ScalarWriter | None = None

    def open(self) -> None:
        """Open the scalar files under ``run_dir/logs``."""
        self.writer = ScalarWriter(self.trainer.run_dir / "logs")

    def close(self) -> None:
        """Close the scalar files."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def after_step(self, scalars: dict[str, float], progress) -> bool:
        """Report the step just taken; return True if it requests a rollback."""
        trainer = self.trainer
        options = trainer.options
        step = trainer.step
        unhealthy = False
        if step % options.log_every == 0 or step == 1:
            unhealthy = trainer.health.check(step, scalars, trainer.generator)
            trainer.last_scalars = scalars
            self.writer.write(step, scalars)
            postfix = {k.split("/")[-1]: f"{v:.3g}" for k, v in scalars.items()}
            progress.set_postfix(postfix, refresh=False)
            log.debug("step %d: %s", step, scalars)
        if options.image_every and step % options.image_every == 0:
            self.write_images()
        return unhealthy and options.rollback_on_unhealthy

    def write_images(self) -> None:
        """Write targets and EMA samples of the fixed batch at the current step."""
        # imported here, so that importing the trainer does not import matplotlib
        from surrogates.training.images import write_sample_image

        trainer = self.trainer
        batch = trainer.fixed_batch
        samples = draw_samples(
            trainer.ema.module,
            batch["inputs"],
            batch["conditions"],
            n_draws=1,
            seed=trainer.options.seed,
        )[0]
        samples = fill_masked(samples, trainer.mask)
        directory = trainer.run_dir / "logs" / "images"
        _, pixels = write_sample_image(
            directory, trainer.step, batch["targets"], samples
        )
        self.writer.write_image(trainer.step, "valid/samples", pixels)
