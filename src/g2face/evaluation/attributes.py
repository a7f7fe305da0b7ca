"""Do anonymized faces keep the apparent attributes of the originals? Gender, age and skin tone.

Originals and anonymized faces are compared crop to crop (G2Face crops, [B, 3, S, S] in [-1, 1]):
gender kept per estimator (both sides on the same side of p(male) = 0.5), absolute age difference
per estimator, and the absolute difference of the Individual Typology Angle of the cheeks and of
the whole bare face skin. Measure with an estimator the anonymizer did not use to choose its
dummies (`wrn-imdbwiki`), or the figure is white-box; `dlib-cydral` is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from g2face.models.fusion import skin_mask
from g2face.priors.attributes import AttributeEstimator, Attributes
from g2face.priors.base import GeometryEncoder
from g2face.priors.skin_tone import MIN_CHROMA, ita_degrees, skin_tone_ita


def to_uint8_images(crops: Tensor) -> np.ndarray:
    """[B, 3, S, S] in [-1, 1] -> RGB uint8 [B, S, S, 3]."""
    pixels = ((crops.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def estimate(estimator: AttributeEstimator, crops: Tensor, batch_size: int = 32) -> Attributes:
    """Run an estimator over any number of crops in batches; results on the CPU."""
    parts = [estimator(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    return Attributes(
        age=torch.cat([p.age.float().cpu() for p in parts]),
        male_probability=torch.cat([p.male_probability.float().cpu() for p in parts]),
    )


@torch.no_grad()
def _landmarks(geometry: GeometryEncoder, crops: Tensor, batch_size: int) -> np.ndarray:
    """The geometry prior's face-mesh landmarks of each crop [N, P, 3] (unit crop coordinates)."""
    return torch.cat(
        [
            geometry(crops[i : i + batch_size]).landmarks.float().cpu()
            for i in range(0, len(crops), batch_size)
        ]
    ).numpy()


def skin_tones(geometry: GeometryEncoder, crops: Tensor, batch_size: int = 32) -> np.ndarray:
    """Cheek ITA (degrees) of each crop [N], from the geometry prior's face-mesh landmarks."""
    images, landmarks = to_uint8_images(crops), _landmarks(geometry, crops, batch_size)
    return np.array([skin_tone_ita(image, points) for image, points in zip(images, landmarks, strict=True)])


def face_skin_tones(geometry: GeometryEncoder, crops: Tensor, batch_size: int = 32) -> np.ndarray:
    """ITA (degrees) of each crop's whole bare face skin [N] (forehead, nose, cheeks and chin: the
    mesh hull without eyes, brows and mouth, lightness-trimmed, `fusion.skin_mask`), read at each
    crop's own mesh; NaN for a greyscale crop or where too little skin shows. The cheeks' ITA
    (`skin_tones`) is what the default's fusion sets directly (`match_cheek_tone`); this one reads
    the rest of the face too, where a fake's own tone, shading and highlights show."""
    images, landmarks = to_uint8_images(crops), _landmarks(geometry, crops, batch_size)
    tones = []
    for image, points in zip(images, landmarks, strict=True):
        skin = skin_mask(points[:, :2] * image.shape[0] - 0.5, image)
        if skin.sum() < 16:
            tones.append(float("nan"))
            continue
        lightness, a_star, b_star = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[
            skin
        ].mean(0)
        colourless = np.hypot(a_star, b_star) < MIN_CHROMA
        tones.append(float("nan") if colourless else ita_degrees(float(lightness), float(b_star)))
    return np.array(tones)


FACE_ITA_FAR = 10.0
"""Degrees of whole-face ITA difference from which a fake's skin tone is counted as clearly off
(`AttributeComparison.summary`'s `face_ita_over_10`): ITA's classes (very light, light,
intermediate, tan, brown, dark) are 12-20 degrees wide."""


CLEAR_GENDER_MARGIN = 0.15
"""How far from P(male) = 0.5 an estimator must read an original for its apparent gender to count as
clear to that estimator (`AttributeComparison.gender_kept_where_clear`)."""


@dataclass(frozen=True)
class AttributeComparison:
    """Per-face comparison of originals with their anonymized (or otherwise changed) versions."""

    gender_kept: dict[str, np.ndarray]
    """estimator name -> bool [N]: predicted gender unchanged."""
    age_error: dict[str, np.ndarray]
    """estimator name -> |age(original) - age(anonymized)| in years [N]."""
    ita_difference: np.ndarray | None
    """|ITA(original) - ITA(anonymized)| in degrees [N] (NaN where either is a greyscale photo), or
    None when no geometry prior was given."""
    face_ita_difference: np.ndarray | None = None
    """|ITA(original) - ITA(anonymized)| of the whole bare face skin (`face_skin_tones`) [N], NaN
    where either has none; None without a geometry prior."""
    estimates: dict[str, tuple[Attributes, Attributes]] = field(default_factory=dict)
    """estimator name -> its estimates of the originals and of the anonymized faces."""

    def gender_kept_where_estimators_agree(self) -> tuple[float, dict[str, float]]:
        """The share of originals whose gender every estimator reads alike, and each estimator's
        gender kept over those faces only. Where estimators disagree on an original, "kept" mostly
        measures one estimator's own error on it (on LFW, judged by the person's name, dlib-cydral
        was right in 8 of 10 such faces of 120)."""
        males = [before.male for before, _ in self.estimates.values()]
        agree = torch.stack(males).eq(males[0]).all(0).numpy()
        kept = {name: float(self.gender_kept[name][agree].mean()) for name in self.estimates}
        return float(agree.mean()), kept

    def gender_kept_where_clear(self, margin: float = CLEAR_GENDER_MARGIN) -> dict[str, tuple[float, float]]:
        """Per estimator: the share of originals it reads at least `margin` from P(male) = 0.5, and its
        gender kept over those faces only. An original an estimator reads near 0.5 is a coin flip
        to it whatever the fake shows: on 150 CelebA pairs (session 29) wrn-imdbwiki lost 7 of the
        14 faces it read at 0.35-0.65 and 6 of the other 136 (LFW: 5 of 11, 1 of 139)."""
        clear = {}
        for name, (before, _) in self.estimates.items():
            sure = ((before.male_probability - 0.5).abs() >= margin).numpy()
            kept = float(self.gender_kept[name][sure].mean()) if sure.any() else float("nan")
            clear[name] = (float(sure.mean()), kept)
        return clear

    def gender_kept_among(self, faces: np.ndarray) -> dict[str, float]:
        """Each estimator's gender kept over the faces `faces` (bool [N]) selects, NaN where it
        selects none: e.g. the faces the anonymizer replaced with a fake, apart from those it
        blurred because they are turned beyond what the generator renders (the turned-face
        fallback): a blur has no gender of its own, and each estimator reads it by habit."""
        faces = np.asarray(faces, dtype=bool)
        return {
            name: float(kept[faces].mean()) if faces.any() else float("nan")
            for name, kept in self.gender_kept.items()
        }

    def summary(self) -> dict[str, float]:
        """Means over faces, keyed `gender_kept/<estimator>`, `age_error/<estimator>` and
        `ita_difference` (over the faces with a skin tone, counted in `ita_faces`)."""
        out = {f"gender_kept/{k}": float(v.mean()) for k, v in self.gender_kept.items()}
        out |= {f"age_error/{k}": float(v.mean()) for k, v in self.age_error.items()}
        if self.ita_difference is not None:
            toned = self.ita_difference[~np.isnan(self.ita_difference)]
            out["ita_difference"] = float(toned.mean()) if len(toned) else float("nan")
            out["ita_faces"] = len(toned)
        if self.face_ita_difference is not None:
            toned = self.face_ita_difference[~np.isnan(self.face_ita_difference)]
            out["face_ita_difference"] = float(toned.mean()) if len(toned) else float("nan")
            out["face_ita_over_10"] = float((toned >= FACE_ITA_FAR).mean()) if len(toned) else float("nan")
            out["face_ita_faces"] = len(toned)
        return out


def compare_attributes(
    originals: Tensor,
    anonymized: Tensor,
    estimators: Sequence[AttributeEstimator],
    geometry: GeometryEncoder | None = None,
    batch_size: int = 32,
) -> AttributeComparison:
    """Compare each original crop with its anonymized crop (same order, [N, 3, S, S] in [-1, 1])."""
    if originals.shape != anonymized.shape:
        raise ValueError(
            f"originals {tuple(originals.shape)} and anonymized {tuple(anonymized.shape)} differ"
        )
    gender_kept, age_error, estimates = {}, {}, {}
    for estimator in estimators:
        before, after = (
            estimate(estimator, originals, batch_size),
            estimate(estimator, anonymized, batch_size),
        )
        estimates[estimator.name] = (before, after)
        gender_kept[estimator.name] = (before.male == after.male).numpy()
        age_error[estimator.name] = (before.age - after.age).abs().numpy()
    ita = face_ita = None
    if geometry is not None:
        ita = np.abs(
            skin_tones(geometry, originals, batch_size) - skin_tones(geometry, anonymized, batch_size)
        )
        face_ita = np.abs(
            face_skin_tones(geometry, originals, batch_size)
            - face_skin_tones(geometry, anonymized, batch_size)
        )
    return AttributeComparison(
        gender_kept=gender_kept,
        age_error=age_error,
        ita_difference=ita,
        face_ita_difference=face_ita,
        estimates=estimates,
    )


@dataclass(frozen=True)
class EstimatorAgreement:
    """How far two estimators agree on the same faces."""

    gender_agreement: float
    age_correlation: float
    age_mean_absolute_difference: float


def estimator_agreement(a: Attributes, b: Attributes) -> EstimatorAgreement:
    age_a, age_b = a.age.double().numpy(), b.age.double().numpy()
    return EstimatorAgreement(
        gender_agreement=float((a.male == b.male).float().mean()),
        age_correlation=float(np.corrcoef(age_a, age_b)[0, 1]),
        age_mean_absolute_difference=float(np.abs(age_a - age_b).mean()),
    )
