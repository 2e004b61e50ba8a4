"""Write Gray-Scott runs with py-pde's own solver and FileStorage (py-pde required).

    python scripts/make_pypde_example.py                  # data/gray_scott_pypde/*.h5
    python scripts/make_pypde_example.py --n-runs 4 --n-grid 32

Each run is one file, one trajectory, with feed rate F and kill rate k stored as
root attributes through FileStorage's ``info``. The files are what
``configs/data/pypde_gray_scott.yaml`` reads, with no conversion step.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("make_pypde_example")

DIFFUSIVITY_U = 1.0
DIFFUSIVITY_V = 0.5


def run(path: Path, feed: float, kill: float, args, seed: int) -> None:
    """Solve one Gray-Scott run and store it with py-pde's FileStorage."""
    import pde
    from pde.trackers.interrupts import ConstantInterrupts

    grid = pde.CartesianGrid(
        [[0.0, args.length], [0.0, args.length]], [args.n_grid] * 2, periodic=True
    )
    rng = np.random.default_rng(seed)
    u = pde.ScalarField(grid, 1.0, label="u")
    v = pde.ScalarField(grid, 0.0, label="v")
    v.data[...] = (rng.random(v.data.shape) < 0.05) * 0.5
    equation = pde.PDE(
        {
            "u": f"{DIFFUSIVITY_U} * laplace(u) - u * v**2 + {feed} * (1 - u)",
            "v": f"{DIFFUSIVITY_V} * laplace(v) + u * v**2 - {feed + kill} * v",
        }
    )
    storage = pde.FileStorage(str(path), info={"F": feed, "k": kill})
    interrupts = ConstantInterrupts(args.snapshot_interval, t_start=args.spinup_time)
    trackers = [storage.tracker(interrupts)]
    t_end = args.spinup_time + args.snapshot_interval * (args.n_snapshots - 0.5)
    equation.solve(
        pde.FieldCollection([u, v]),
        t_range=t_end,
        dt=args.dt,
        tracker=trackers,
        solver="explicit",
        backend="numba",
    )
    log.info("wrote %s (F=%g, k=%g)", path, feed, kill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("data/gray_scott_pypde"))
    parser.add_argument("--n-runs", type=int, default=8, help="files to write")
    parser.add_argument("--n-grid", type=int, default=32, help="points per axis")
    parser.add_argument("--length", type=float, default=64.0, help="domain side")
    parser.add_argument("--n-snapshots", type=int, default=20)
    parser.add_argument("--snapshot-interval", type=float, default=50.0)
    parser.add_argument("--spinup-time", type=float, default=500.0)
    parser.add_argument("--dt", type=float, default=0.25, help="solver time step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.n_runs):
        feed = float(rng.uniform(0.03, 0.05))
        kill = float(rng.uniform(0.058, 0.064))
        run(args.output / f"run_{i:03d}.h5", feed, kill, args, seed=args.seed + i)


if __name__ == "__main__":
    main()
