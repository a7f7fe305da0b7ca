"""Whether a real photo's face wears glasses: a linear classifier on the HOG of the band across
the eyes, fitted on faces labelled by eye (`scripts/fit_glasses_reader.py`; model card in
docs/measurements.md, "Session 36").

The edge across the nose bridge (`fusion.glasses_score`) reads a rendered face's glasses well but a
photo's poorly: thin metal frames score like bare skin, fringes and cap brims like thick frames. On
647 LFW and CelebA faces labelled by eye (82 wearing glasses) its three states (bare below 90, sure
from 150) read 32 wearers as bare and were right on 17 of 24 "sure"; this reader with the edge score
(`glasses_state`), cross-validated, reads 3 wearers as bare and is right on all 52 it is sure of.
Renders are still judged by the edge score (their frames are crisp; its thresholds there were set
on renders).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from safetensors.numpy import load_file

from g2face.models.fusion import GLASSES_SURE_ORIGINAL, face_width, glasses_score

GLASSES_READER_FILE = "glasses_reader.safetensors"
"""The fitted reader in `g2face/assets`: `mean`, `scale` (feature standardisation), `weight`, `bias`."""

EYE_BAND_SIZE = (128, 64)
"""(width, height) in pixels of the band the features are read on."""
EYE_BAND_SPAN = 1.2
"""The band's width in face widths (`fusion.face_width`), centred between the outer eye corners and
turned so they lie level; its height is half that. Wide enough for the temples' hinges and a large
frame's outer rims, low enough to leave out the mouth and most of the hair."""
EYE_CORNERS = (33, 263)  # MediaPipe mesh: outer corners of the two eyes

GLASSES_SURE_PROBABILITY = 0.8
"""At or above this a photo wears glasses and the fake should keep them: cross-validated on the 647
labelled faces (5 folds), all 50 read at 0.8 or more wore glasses (61 % of the 82 wearers; the edge
score's "sure" held 17 of them and 7 faces without). With each crop blurred as a face about 34 px
wide shows it (the crop spanning 64 photo pixels), 36 of 37; about 25 px wide, 29 of 30."""
GLASSES_NONE_PROBABILITY = 0.05
"""Below this a photo counts as without glasses, so a fake must not bring any: cross-validated, 525
of the 565 faces without glasses read below it, and 3 of the 82 with them (the edge score read 32
wearers as bare); 8 of the 82 blurred as a 34-px face's, 12 as a 25-px face's. In between the
reading is unsure: glasses are neither kept nor avoided."""


def eye_band(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The grey band across the eyes (`EYE_BAND_SPAN`, `EYE_BAND_SIZE`) of a uint8 RGB crop whose
    MediaPipe mesh `points` are in its pixels, the eye corners level."""
    left, right = points[EYE_CORNERS[0], :2], points[EYE_CORNERS[1], :2]
    centre, (dx, dy) = (left + right) / 2, right - left
    width, height = EYE_BAND_SIZE
    scale = width / (EYE_BAND_SPAN * face_width(points))
    matrix = cv2.getRotationMatrix2D(
        (float(centre[0]), float(centre[1])), float(np.degrees(np.arctan2(dy, dx))), scale
    )
    matrix[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    # (area averaging when the band shrinks the crop, as the fit's crops were read)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(grey, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


# HOG of the band: 16-px blocks of four 8-px cells, 9 orientations: 3,780 values. Frames are edges
# in a few places (rims, bridge, hinges) at a few orientations, which is what HOG describes.
_HOG = cv2.HOGDescriptor(EYE_BAND_SIZE, (16, 16), (8, 8), (8, 8), 9)


def eye_band_features(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The reader's input: the HOG of `eye_band`, float32 [3780]."""
    return _HOG.compute(eye_band(crop, points)).ravel()


class GlassesReader:
    """P(the face wears glasses) of an aligned photo crop: logistic regression on
    `eye_band_features`, standardised."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: float):
        if not mean.shape == scale.shape == weight.shape:
            raise ValueError(f"glasses reader shapes differ: {mean.shape}, {scale.shape}, {weight.shape}")
        self.mean, self.scale, self.weight, self.bias = mean, scale, weight, float(bias)

    @classmethod
    def from_file(cls, path=None) -> GlassesReader:
        """The reader in `path`, or the one shipped in the package."""
        if path is None:
            path = resources.files("g2face") / "assets" / GLASSES_READER_FILE
        tensors = load_file(str(path))
        return cls(tensors["mean"], tensors["scale"], tensors["weight"], float(tensors["bias"][0]))

    def probability(self, crop: np.ndarray, points: np.ndarray) -> float:
        """P(glasses) of a uint8 RGB crop with its mesh `points` in pixels."""
        features = (eye_band_features(crop, points) - self.mean) / self.scale
        logit = float(features.astype(np.float64) @ self.weight.astype(np.float64)) + self.bias
        return float(1 / (1 + np.exp(-np.clip(logit, -60, 60))))


@lru_cache(maxsize=1)
def glasses_reader() -> GlassesReader:
    """The shipped reader, loaded once."""
    return GlassesReader.from_file()


GLASSES_AGREED_PROBABILITY = 0.5
"""A photo the reader leans towards glasses (at or above this, under `GLASSES_SURE_PROBABILITY`) and
whose nose-bridge edge reads sure (`fusion.GLASSES_SURE_ORIGINAL`) wears glasses too: two readings
of different cues agreeing. Cross-validated, that adds 2 wearers to the reader's 50 and no face
without (Grace Hopper's translucent frames, reader 0.55, are kept so); on crops blurred as a 34-px
face's 3 wearers to 37 and none without, as a 25-px face's 3 wearers and 1 face without."""


def glasses_state(probability: float, edge_score: float) -> bool | None:
    """False (a fake must not bring glasses), True (the fake should keep them) or None (unsure:
    neither) from the reader's `probability` and the photo's `fusion.glasses_score`."""
    if probability < GLASSES_NONE_PROBABILITY:
        return False
    if probability >= GLASSES_SURE_PROBABILITY:
        return True
    agreed = probability >= GLASSES_AGREED_PROBABILITY and edge_score >= GLASSES_SURE_ORIGINAL
    return True if agreed else None


def original_glasses(crop: np.ndarray, points: np.ndarray, source_width: float | None = None) -> bool | None:
    """Whether a real photo (a uint8 RGB crop, its mesh `points` in pixels, spanning `source_width`
    photo pixels) wears glasses: `glasses_state` of `glasses_reader` and `fusion.glasses_score`."""
    probability = glasses_reader().probability(crop, points)
    return glasses_state(probability, glasses_score(crop, points, source_width))
