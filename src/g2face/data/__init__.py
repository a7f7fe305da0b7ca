"""Datasets of aligned face crops cached on disk, and their preparation from any photo folder."""

from g2face.data.dataset import AlignedFaceDataset
from g2face.data.prepare import CropRecord, PrepareReport, default_dataset_dir, prepare_dataset, read_manifest

__all__ = [
    "AlignedFaceDataset",
    "CropRecord",
    "PrepareReport",
    "default_dataset_dir",
    "prepare_dataset",
    "read_manifest",
]
