"""Shared fixtures: seeding and a small canonical HDF5 file."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from datafiles import write_canonical_file


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002
    torch.manual_seed(0)


@pytest.fixture
def canonical_file(tmp_path):
    path = tmp_path / "waves.h5"
    write_canonical_file(path)
    return path
