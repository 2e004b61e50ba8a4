"""Reading solver HDF5 through layout configs into normalized step samples."""

from surrogates.data.chunks import ChunkGeometry, ReadPlan
from surrogates.data.dataset import (
    EpochSampler,
    StepDataset,
    StepTask,
    make_loader,
    split_trajectories,
)
from surrogates.data.layout import Layout, LayoutError, layout_from_dict
from surrogates.data.normalization import Normalizer, fit_normalizer
from surrogates.data.sampler import ChunkSampler, chunk_groups
from surrogates.data.source import DataFileError, HDF5Source, NonFiniteValueError

__all__ = [
    "ChunkGeometry",
    "ChunkSampler",
    "DataFileError",
    "EpochSampler",
    "HDF5Source",
    "Layout",
    "LayoutError",
    "NonFiniteValueError",
    "Normalizer",
    "ReadPlan",
    "StepDataset",
    "StepTask",
    "chunk_groups",
    "fit_normalizer",
    "layout_from_dict",
    "make_loader",
    "split_trajectories",
]
