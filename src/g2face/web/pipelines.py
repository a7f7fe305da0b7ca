"""The model, loaded once and shared by every method: blur / pixelate / box wrap the same loaded
model (its recognizer, codec and recovery renderer), as `G2FacePipeline.from_pretrained` does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from g2face.models.classic import ClassicAnonymizer
from g2face.pipeline.g2face import G2FacePipeline


class SharedPipelines:
    """`get(method)` → a pipeline; the first call loads the model (`load` may be called earlier, e.g.
    at startup, so that a missing model is reported before the page opens)."""

    def __init__(self, load: Callable[[], G2FacePipeline], name: str):
        self._load = load
        self.name = name
        self._lock = threading.Lock()
        self._by_method: dict[str, G2FacePipeline] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str = "cpu") -> SharedPipelines:
        return cls(
            lambda: G2FacePipeline.from_pretrained(name_or_path, device=device), Path(name_or_path).name
        )

    @classmethod
    def of(cls, pipeline: G2FacePipeline, name: str = "custom") -> SharedPipelines:
        """Around a pipeline built already (tests: the tiny random model)."""
        return cls(lambda: pipeline, name)

    def load(self) -> G2FacePipeline:
        with self._lock:
            if "g2face" not in self._by_method:
                self._by_method["g2face"] = self._load()
            return self._by_method["g2face"]

    def get(self, method: str) -> G2FacePipeline:
        base = self.load()
        with self._lock:
            if method not in self._by_method:
                self._by_method[method] = G2FacePipeline(
                    ClassicAnonymizer(method, base.model),
                    base.detector,
                    batch_size=base.batch_size,
                    device=base.device,
                    carriers=base.carriers,
                )
            return self._by_method[method]
