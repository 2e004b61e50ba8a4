"""Images of target and generated fields, written during training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

log = logging.getLogger(__name__)


def sample_figure(targets: Tensor, samples: Tensor, *, channel: int = 0) -> Figure:
    """Draw targets (top row) above one generated sample each (bottom row).

    Parameters
    ----------
    targets, samples
        Fields `(B, C, H, W)`; up to 4 samples of ``channel`` are shown, each pair
        with the color limits of its target.
    """
    n_columns = min(4, targets.shape[0])
    figure = Figure(figsize=(2.2 * n_columns, 4.4), layout="constrained")
    axes = figure.subplots(2, n_columns, squeeze=False)
    for column in range(n_columns):
        target = targets[column, channel].detach().float().cpu().numpy()
        sample = samples[column, channel].detach().float().cpu().numpy()
        limits = {"vmin": float(target.min()), "vmax": float(target.max())}
        for row, (values, label) in enumerate(((target, "target"), (sample, "sample"))):
            axis = axes[row, column]
            axis.imshow(values, origin="lower", cmap="RdBu_r", **limits)
            axis.set_title(f"{label} {column}, channel {channel}", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    return figure


def figure_pixels(figure: Figure) -> np.ndarray:
    """Render ``figure`` to RGB pixels `(height, width, 3)`, uint8."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def write_sample_image(
    directory: Path | str, step: int, targets: Tensor, samples: Tensor
) -> tuple[Path, np.ndarray]:
    """Save ``step_<step>.png`` under ``directory``; return its path and pixels."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figure = sample_figure(targets, samples)
    pixels = figure_pixels(figure)
    path = directory / f"step_{step}.png"
    figure.savefig(path, dpi=100)
    log.debug("wrote sample image %s", path)
    return path, pixels
