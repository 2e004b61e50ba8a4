"""Scalar logging to CSV and, when installed, TensorBoard."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class ScalarWriter:
    """Append namespaced scalars (``train/loss_d``, ``valid/rel_l2``) per step.

    The CSV has one row per call of :meth:`write`, in long format
    (``step, name, value``), so new names can appear at any step. TensorBoard event
    files are written next to it when the ``tensorboard`` package is installed.
    """

    def __init__(self, directory: Path | str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.directory = Path(directory)
        self._tensorboard = None
        if not enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.directory / "scalars.csv"
        new = not self.csv_path.exists()
        self._file = open(self.csv_path, "a", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "name", "value"])
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed; scalars go to CSV only")
        else:
            self._tensorboard = SummaryWriter(str(self.directory / "tensorboard"))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Record each scalar at ``step``."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._csv.writerow([step, name, f"{float(value):.8g}"])
            if self._tensorboard is not None:
                self._tensorboard.add_scalar(name, float(value), step)
        self._file.flush()

    def write_image(self, step: int, name: str, pixels) -> None:
        """Record RGB pixels `(height, width, 3)` in TensorBoard, if installed."""
        if self.enabled and self._tensorboard is not None:
            self._tensorboard.add_image(name, pixels, step, dataformats="HWC")

    def close(self) -> None:
        """Flush and close the files."""
        if not self.enabled:
            return
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
