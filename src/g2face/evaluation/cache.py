"""Resumable per-(method, variant) feature records in a run folder.

A record is a small dict of numpy arrays (embeddings, geometry, flags) for one image. Records are
written in shards (`part-NNNNN.npz`, atomically: temp file + rename, no pickles), so an interrupted
run loses at most one unflushed shard and a rerun computes only what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

Record = dict[str, np.ndarray]


class FeatureCache:
    def __init__(self, folder: Path, flush_every: int = 256):
        self.folder, self.flush_every = Path(folder), flush_every
        self.folder.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, Record] = {}
        self._pending: dict[str, Record] = {}
        for shard in sorted(self.folder.glob("part-*.npz")):
            with np.load(shard, allow_pickle=False) as data:
                for i, key in enumerate(data["keys"].tolist()):
                    prefix = f"{i}/"
                    self._records[key] = {
                        name[len(prefix) :]: data[name] for name in data.files if name.startswith(prefix)
                    }

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __getitem__(self, key: str) -> Record:
        return self._records[key]

    def __len__(self) -> int:
        return len(self._records)

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self._records]

    def put(self, key: str, record: Record) -> None:
        record = {name: np.asarray(value) for name, value in record.items()}
        self._records[key] = self._pending[key] = record
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        index = len(list(self.folder.glob("part-*.npz")))
        arrays = {"keys": np.array(list(self._pending))}
        for i, record in enumerate(self._pending.values()):
            arrays.update({f"{i}/{name}": value for name, value in record.items()})
        target = self.folder / f"part-{index:05d}.npz"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, target)
        self._pending.clear()

    def stack(self, keys: list[str], field: str, fill: float = np.nan) -> np.ndarray:
        """One row per key: the field's value, or `fill` where the record or the field is absent."""
        values = [self._records.get(k, {}).get(field) for k in keys]
        shape = next((np.shape(v) for v in values if v is not None), ())
        return np.stack(
            [np.full(shape, fill) if v is None else np.asarray(v, dtype=np.float64) for v in values]
        )
