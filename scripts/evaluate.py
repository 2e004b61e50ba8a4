"""Evaluate a trained run on its held-out test trajectories.

    python scripts/evaluate.py run_dir=outputs/train/<run>
    python scripts/evaluate.py run_dir=outputs/train/<run> evaluation.n_ensemble=16

Writes ``metrics.json`` and ``plots/`` into ``output_dir`` (default: ``run_dir``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import plain, solver_advance

from surrogates.evaluation import evaluate
from surrogates.training import load_checkpoint, resolve_device

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="../configs", config_name="evaluate")
def main(config: DictConfig) -> dict:
    """Evaluate and return the headline metrics."""
    run_dir = Path(to_absolute_path(config.run_dir))
    model_dir = run_dir / "cgan" if (run_dir / "cgan").is_dir() else run_dir
    baseline_dir = config.baseline_dir
    if baseline_dir is None and (run_dir / "baseline").is_dir():
        baseline_dir = run_dir / "baseline"
    elif baseline_dir is not None:
        baseline_dir = Path(to_absolute_path(baseline_dir))
    output_dir = Path(to_absolute_path(config.output_dir or str(run_dir)))
    evaluation = plain(config.evaluation)
    device = resolve_device(config.device)
    layout = load_checkpoint(model_dir, with_state=False).meta["layout"]
    advance = solver_advance(evaluation.pop("solver"), layout, device)
    metrics = evaluate(
        model_dir,
        baseline_dir=baseline_dir,
        output_dir=output_dir,
        solver_advance=advance,
        device=str(device),
        **evaluation,
    )
    print(json.dumps(metrics["headline"], indent=2))
    return metrics["headline"]


if __name__ == "__main__":
    main()
