"""Datasets: the in-memory representation, the loaders of every format, and generation."""

from bearl.data.dataset import Batch, Dataset, DatasetInfo
from bearl.data.load import load_dataset

__all__ = ["Batch", "Dataset", "DatasetInfo", "load_dataset"]
