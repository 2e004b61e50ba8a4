"""Train a conditional GAN surrogate and its baseline, then evaluate both.

    python scripts/train.py                       # default Navier-Stokes job
    python scripts/train.py data=pypde_gray_scott evaluation.solver=null
    python scripts/train.py training.time_budget_s=60 baseline.enabled=false

Outputs go to the hydra run directory: ``cgan/`` and ``baseline/`` (checkpoints
and logs), ``metrics.json`` and ``plots/``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_data, plain, solver_advance

from surrogates.evaluation import evaluate
from surrogates.training import resolve_device, train_surrogate

log = logging.getLogger(__name__)


def train_one(config: DictConfig, layout: dict, run_dir: Path, overrides: dict) -> Path:
    """Train one model into ``run_dir`` and return its checkpoint."""
    return train_surrogate(
        layout=layout,
        task=plain(config.data.task),
        model=plain(config.model),
        training={**plain(config.training), **overrides},
        run_dir=run_dir,
        split_fractions=list(config.split.fractions),
        split_seed=int(config.split.seed),
        device=config.device,
        resume=bool(config.resume),
    )


@hydra.main(version_base=None, config_path="../configs", config_name="train")
def main(config: DictConfig) -> dict:
    """Run the main job and return the headline metrics."""
    run_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    layout = ensure_data(config)
    train_one(config, layout, run_dir / "cgan", {})
    baseline_dir = None
    if config.baseline.enabled:
        baseline_dir = run_dir / "baseline"
        overrides = plain(config.baseline.training_overrides)
        train_one(config, layout, baseline_dir, overrides)

    evaluation = plain(config.evaluation)
    device = resolve_device(config.device)
    advance = solver_advance(evaluation.pop("solver"), layout, device)
    metrics = evaluate(
        run_dir / "cgan",
        baseline_dir=baseline_dir,
        output_dir=run_dir,
        solver_advance=advance,
        device=str(device),
        **evaluation,
    )
    summary = json.dumps(metrics["headline"], indent=2)
    print(f"\nrun directory: {run_dir}\nmetrics: {run_dir / 'metrics.json'}")
    print(f"plots: {run_dir / 'plots'}\nheadline figures:\n{summary}")
    return metrics["headline"]


if __name__ == "__main__":
    main()
