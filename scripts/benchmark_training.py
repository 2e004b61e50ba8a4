"""Time one training step of the framework against a bare hand-written loop.

Both sides train the same generator and discriminator (the sizes of
``configs/model/unet.yaml``, or ``--base-channels``) on the same random batch. The
discriminator minimizes the hinge loss. The generator minimizes L1 plus 0.05 times
the hinge generator loss. Both use Adam, and the generator's parameters are
averaged into an EMA.
The framework side calls ``Trainer.train_step``, so its time includes the
finiteness checks, the gradient-norm computation, the autocast contexts and the
scalar read-outs. Data loading, logging and checkpoints are left out of both.

Prints a markdown table with the median step time over ``--steps`` steps after
``--warmup`` steps, per precision. The two sides take turns step by step.

Example: ``python scripts/benchmark_training.py --threads 2 --precisions fp32 bf16``
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import Dataset

from surrogates.models import PatchDiscriminator, UNetGenerator
from surrogates.training import Trainer, TrainingOptions
from surrogates.training.ema import ema_model
from surrogates.training.precision import Precision

ADVERSARIAL_WEIGHT = 0.05
MODEL_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "model" / "unet.yaml"


class RandomSteps(Dataset):
    """Random step samples ``(inputs, conditions, targets)`` held in memory."""

    def __init__(self, n_samples: int, grid: int, n_conditions: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(n_samples, 1, grid, grid, generator=generator)
        self.targets = torch.randn(n_samples, 1, grid, grid, generator=generator)
        self.conditions = torch.randn(n_samples, n_conditions, generator=generator)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "inputs": self.inputs[i],
            "conditions": self.conditions[i],
            "targets": self.targets[i],
        }


def build_models(base_channels: int | None):
    """Return a generator and a discriminator with the model config's sizes."""
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    generator_args = dict(config["generator"])
    if base_channels is not None:
        generator_args["base_channels"] = base_channels
    torch.manual_seed(0)
    generator = UNetGenerator(1, 1, 1, **generator_args)
    discriminator = PatchDiscriminator(1, 1, 1, **config["discriminator"])
    return generator, discriminator


def bare_step(models, optimizers, ema, batch, precision: Precision) -> None:
    """One discriminator and one generator update, written out by hand."""
    generator, discriminator = models
    optimizer_g, optimizer_d = optimizers
    inputs, conditions, targets = batch
    with torch.no_grad(), precision.autocast():
        fake = generator(inputs, conditions).float()
    with precision.autocast():
        logits_real = discriminator(inputs, conditions, targets).float()
        logits_fake = discriminator(inputs, conditions, fake).float()
    loss_d = F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    optimizer_d.zero_grad(set_to_none=True)
    loss_d.backward()
    optimizer_d.step()

    with precision.autocast():
        fake = generator(inputs, conditions).float()
        logits = discriminator(inputs, conditions, fake).float()
    loss_g = (fake - targets).abs().mean() - ADVERSARIAL_WEIGHT * logits.mean()
    optimizer_g.zero_grad(set_to_none=True)
    loss_g.backward()
    optimizer_g.step()
    ema.update_parameters(generator)


def median_times(steps, n_warmup: int, n_steps: int) -> list[float]:
    """Return the median wall time in seconds of each callable in ``steps``.

    The callables take turns, so a load from other processes that comes and goes
    affects each of them alike.
    """
    for _ in range(n_warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(n_steps):
        for step, record in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def time_precision(args, name: str) -> list[float]:
    """Return the median step times ``[framework, bare]`` for one precision."""
    generator, discriminator = build_models(args.base_channels)
    models = (copy.deepcopy(generator), copy.deepcopy(discriminator))
    dataset = RandomSteps(args.batch_size, args.grid, 1)
    batch = [getattr(dataset, key) for key in ("inputs", "conditions", "targets")]
    batch_dict = dict(zip(("inputs", "conditions", "targets"), batch, strict=True))
    options = TrainingOptions(
        batch_size=args.batch_size,
        precision=name,
        adversarial_weight=ADVERSARIAL_WEIGHT,
        log_every=10**9,
        checkpoint_every=10**9,
    )
    optimizers = [
        torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.99))
        for model in models
    ]
    ema = ema_model(models[0], 0.995)
    precision = Precision(name, "cpu")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(generator, discriminator, dataset, run_dir, options)
        steps = [
            lambda: trainer.train_step(batch_dict),
            lambda: bare_step(models, optimizers, ema, batch, precision),
        ]
        return median_times(steps, args.warmup, args.steps)


def main() -> None:
    """Parse arguments, time each precision and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64, help="grid points per axis")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-channels", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, batch {args.batch_size} "
        f"of {args.grid}x{args.grid}, median of {args.steps} steps\n"
    )
    print("| precision | framework step (ms) | bare loop (ms) | overhead |")
    print("|---|---|---|---|")
    for name in args.precisions:
        framework, bare = time_precision(args, name)
        overhead = 100 * (framework / bare - 1)
        print(
            f"| {name} | {1e3 * framework:.1f} | {1e3 * bare:.1f} | {overhead:+.1f} % |"
        )


if __name__ == "__main__":
    main()
