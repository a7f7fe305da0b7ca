"""A PyTorch dataset over a folder prepared by `prepare_dataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from g2face.data.prepare import CropRecord, read_manifest


class AlignedFaceDataset(Dataset):
    """Aligned face crops as float tensors [3, size, size], RGB in [-1, 1].

    `size` resamples the cached crops (e.g. 32 px for the tiny configuration); `hflip` mirrors
    each crop with probability ½ (the FFHQ framing is symmetric, so flipped crops stay aligned).
    """

    def __init__(self, folder: Path, size: int | None = None, hflip: bool = False) -> None:
        self.folder = Path(folder)
        self.records: list[CropRecord] = read_manifest(self.folder)
        if not self.records:
            raise ValueError(f"{self.folder} holds no crops")
        self.size = size
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.folder / self.records[index].crop) as image:
            image = image.convert("RGB")
            if self.size is not None and image.size != (self.size, self.size):
                image = image.resize((self.size, self.size), Image.LANCZOS)
            crop = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1
        if self.hflip and torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return crop
