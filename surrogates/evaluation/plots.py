"""PNG figures of fields, spectra and metrics over lead time.

Figures are built on :class:`matplotlib.figure.Figure` directly, without pyplot, so
no global figure list or backend is touched: the functions are safe in any backend
and thread, and nothing stays open after they return. Inputs are numpy arrays or
anything :func:`numpy.asarray` accepts; torch tensors are moved to the CPU first.
NaN values are drawn as missing data.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_DPI = 100
_MISSING_COLOR = "0.8"


def _as_array(value, name: str, ndim: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D array, got shape {array.shape}; "
            "index or squeeze it first"
        )
    return array


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path={str(path)!r} must end in .png, the written format")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI)
    log.debug("wrote figure %s", path)
    return path


def _color_limits(arrays: Sequence[np.ndarray], symmetric: bool) -> tuple[float, float]:
    values = np.concatenate([array.ravel() for array in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return -1.0, 1.0
    if symmetric:
        vmax = float(np.abs(values).max())
        low, high = -vmax, vmax
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        # constant panels: widen the range so the colour bar has a scale
        return low - 1.0, high + 1.0
    return low, high


def plot_fields(
    path: str | Path,
    panels: Mapping[str, np.ndarray],
    *,
    title: str = "",
    cmap: str | Colormap = "RdBu_r",
    symmetric: bool = True,
    own_scale: Sequence[str] | None = None,
) -> Path:
    """Draw 2D fields side by side, each with a colour bar, and write a PNG.

    Panels share one colour scale, so truth and sample compare directly, except the
    panels in ``own_scale``, which each get their own.

    Parameters
    ----------
    path : str or Path
        Output file ending in ``.png``; missing parent folders are created.
    panels : mapping of str to array
        Panel title to field of shape ``(H, W)``, drawn left to right with row 0 at
        the bottom (``y`` up, ``x`` right).
    title : str, optional
        Figure title.
    cmap : str or Colormap, default ``"RdBu_r"``
        Colour map; NaN values are drawn in light grey.
    symmetric : bool, default True
        Centre every colour scale on zero, as suits signed fields such as vorticity.
    own_scale : sequence of str, optional
        Panel titles with a separate colour scale. By default every panel whose
        title contains "error" (in any case).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``panels`` is empty, a panel is not 2-D, a title in ``own_scale`` is not
        a panel, or ``path`` does not end in ``.png``.
    """
    if not panels:
        raise ValueError("panels is empty, expected at least one (H, W) field")
    arrays = {
        name: _as_array(field, f"panel {name!r}", ndim=2)
        for name, field in panels.items()
    }
    if own_scale is None:
        own_scale = [name for name in arrays if "error" in name.lower()]
    unknown = sorted(set(own_scale) - set(arrays))
    if unknown:
        raise ValueError(
            f"own_scale contains {unknown}, which are not panel titles; expected "
            f"titles from {list(arrays)}"
        )
    shared = [array for name, array in arrays.items() if name not in own_scale]
    shared_limits = _color_limits(shared, symmetric) if shared else None
    colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    colormap = colormap.with_extremes(bad=_MISSING_COLOR)

    figure = Figure(figsize=(3.6 * len(arrays), 3.4), layout="constrained")
    axes = figure.subplots(1, len(arrays), squeeze=False)[0]
    for ax, (name, array) in zip(axes, arrays.items(), strict=True):
        own = name in own_scale
        vmin, vmax = _color_limits([array], symmetric) if own else shared_limits
        image = ax.imshow(
            np.ma.masked_invalid(array),
            cmap=colormap,
            vmin=vmin,
            vmax=vmax,
            origin="lower",
            interpolation="nearest",
        )
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        figure.colorbar(image, ax=ax, shrink=0.85)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_spectra(
    path: str | Path,
    k: np.ndarray,
    spectra: Mapping[str, np.ndarray],
    *,
    title: str = "",
    k_max: float | None = None,
    xlabel: str = "wavenumber k",
    ylabel: str = "power spectrum P(k)",
    reference: str | None = None,
) -> Path:
    """Draw power spectra on log-log axes, one line per label, and write a PNG.

    Points with ``k <= 0`` or a spectrum value ``<= 0`` cannot be shown on log axes
    and are left out, like NaN values.

    Parameters
    ----------
    path : str or Path
        Output file ending in ``.png``; missing parent folders are created.
    k : array
        ``(K,)`` wavenumbers.
    spectra : mapping of str to array
        Line label to spectrum of shape ``(K,)``.
    title, xlabel, ylabel : str, optional
        Figure title and axis labels.
    k_max : float, optional
        Wavenumber marked by a dashed vertical line, for example the dealiasing
        cutoff.
    reference : str, optional
        Label of the reference spectrum (the solver's), drawn as a thick black line
        on top of the others so that an identical spectrum cannot hide it.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``spectra`` is empty, ``k`` is not 1-D, a spectrum is not ``(K,)``, or
        ``path`` does not end in ``.png``.
    """
    if not spectra:
        raise ValueError("spectra is empty, expected at least one (K,) spectrum")
    k = _as_array(k, "k", ndim=1)
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = figure.subplots()
    for label, spectrum in spectra.items():
        spectrum = _as_array(spectrum, f"spectrum {label!r}", ndim=1)
        if spectrum.shape != k.shape:
            raise ValueError(
                f"spectrum {label!r} has shape {spectrum.shape}, expected {k.shape} "
                "to match k"
            )
        visible = (k > 0) & (spectrum > 0)
        k_visible = np.where(visible, k, np.nan)
        style = {"label": label}
        if label == reference:
            style.update(color="black", linewidth=2.5, alpha=0.6, zorder=3)
        ax.loglog(k_visible, np.where(visible, spectrum, np.nan), **style)
    if k_max is not None:
        ax.axvline(
            k_max, color="0.3", linestyle="--", linewidth=1, label=f"k_max = {k_max:g}"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(figure, path)


def plot_lead_time(
    path: str | Path,
    lead_times: np.ndarray,
    curves: Mapping[str, Mapping[str, np.ndarray]],
    *,
    title: str = "",
    xlabel: str = "lead time",
) -> Path:
    """Draw metrics against lead time, one panel per metric, and write a PNG.

    Each model keeps its colour across the panels.

    Parameters
    ----------
    path : str or Path
        Output file ending in ``.png``; missing parent folders are created.
    lead_times : array
        ``(T,)`` lead times, in the unit named by ``xlabel``.
    curves : mapping of str to mapping of str to array
        Metric name (for example ``"relative L2"``) to model name (for example
        ``"cGAN"``, ``"persistence"``) to values of shape ``(T,)``.
    title, xlabel : str, optional
        Figure title and the label of the time axis.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``curves`` or one of its metrics is empty, ``lead_times`` is not 1-D, a
        curve is not ``(T,)``, or ``path`` does not end in ``.png``.
    """
    if not curves:
        raise ValueError("curves is empty, expected at least one metric")
    lead_times = _as_array(lead_times, "lead_times", ndim=1)
    models = list(dict.fromkeys(model for lines in curves.values() for model in lines))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]

    figure = Figure(figsize=(4.5 * len(curves), 3.8), layout="constrained")
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for ax, (metric, lines) in zip(axes, curves.items(), strict=True):
        if not lines:
            raise ValueError(f"metric {metric!r} has no curves, expected at least one")
        for model, values in lines.items():
            values = _as_array(values, f"curve {metric!r}/{model!r}", ndim=1)
            if values.shape != lead_times.shape:
                raise ValueError(
                    f"curve {metric!r}/{model!r} has shape {values.shape}, expected "
                    f"{lead_times.shape} to match lead_times"
                )
            color = colors[models.index(model) % len(colors)]
            ax.plot(lead_times, values, marker=".", color=color, label=model)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)
