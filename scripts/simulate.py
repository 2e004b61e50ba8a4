"""Write a reference dataset from the ``simulate`` config group.

Usage::

    python scripts/simulate.py                                 # configs/simulate.yaml
    python scripts/simulate.py simulate.n_trajectories=8 simulate.output=/tmp/ns.h5

Every key of the ``simulate`` group except ``output`` is a keyword argument of
``simulations.navier_stokes.generate_dataset``. A relative ``output`` is resolved
against the directory the command was launched from.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from simulations.navier_stokes import generate_dataset

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="../configs", config_name="simulate")
def main(config: DictConfig) -> None:
    """Generate the dataset of ``config.simulate``; log its path and run time."""
    settings = OmegaConf.to_container(config.simulate, resolve=True)
    path = Path(to_absolute_path(settings.pop("output")))
    config_yaml = OmegaConf.to_yaml(config, resolve=True)

    start = time.perf_counter()
    written = generate_dataset(path, **settings, config_yaml=config_yaml)
    log.info("dataset written to %s in %.1f s", written, time.perf_counter() - start)


if __name__ == "__main__":
    main()
