"""Reading solver HDF5 through layout configs into normalized step samples."""

from surrogates.data.dataset import (
    EpochSampler,
    StepDataset,
    StepTask,
    make_loader,
    split_trajectories,
)
from surrogates.data.layout import Layout, LayoutError, layout_from_dict
from surrogates.data.normalization import Normalizer, fit_normalizer
from surrogates.data.source import DataFileError, HDF5Source, NonFiniteValueError

__all__ = [
    "DataFileError",
    "EpochSampler",
    "HDF5Source",
    "Layout",
    "LayoutError",
    "NonFiniteValueError",
    "Normalizer",
    "StepDataset",
    "StepTask",
    "fit_normalizer",
    "layout_from_dict",
    "make_loader",
    "split_trajectories",
]
