"""Run training jobs in a fresh process, for tests of resume and crash safety.

    python training_job.py JOBS_JSON

``JOBS_JSON`` names a file with ``{"data_file": path, "runs": [{"run_dir": path,
"training": {...}, "resume": bool}, ...]}``. Each run calls ``train_surrogate`` on
the canonical test file with the tiny test model, on the CPU, with one thread and
deterministic algorithms, so two processes given the same job compute bit-identical
results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafiles import TASK, TINY_MODEL, canonical_layout

from surrogates.training import train_surrogate


def main(jobs_path: str) -> None:
    """Run every job of the file at ``jobs_path`` in order."""
    jobs = json.loads(Path(jobs_path).read_text())
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for run in jobs["runs"]:
        train_surrogate(
            layout=canonical_layout(jobs["data_file"]),
            task=TASK,
            model=TINY_MODEL,
            training=run["training"],
            run_dir=run["run_dir"],
            device="cpu",
            resume=run["resume"],
        )


if __name__ == "__main__":
    main(sys.argv[1])
