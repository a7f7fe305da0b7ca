"""Evaluation metrics as pure functions on numpy arrays (embeddings, scores) or image tensors.

Conventions: embeddings are rows (L2-normalised here before any cosine); image batches are
[B, 3, H, W] tensors in [-1, 1] and are scored on the [0, 1] scale; per-item metrics return one value
per face so callers can report means *and* sample sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity
from torch import Tensor

PSNR_CAP_DB = 100.0
"""PSNR of identical images is infinite; it is reported as this cap so means stay finite."""

MEDIAPIPE_OUTER_EYE_CORNERS = (33, 263)
"""Indices of the outer eye corners in MediaPipe's 478-point mesh: the landmark-NME normaliser."""


# --- verification and identification -------------------------------------------------------------


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] embedding arrays."""
    return np.sum(normalize_rows(a) * normalize_rows(b), axis=1)


@dataclass(frozen=True)
class Roc:
    """ROC of a scorer where `score >= threshold` means "same person"."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.sum(np.diff(self.far) * (self.tar[1:] + self.tar[:-1]) / 2))  # trapezoids


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    """ROC points at every distinct score (ties move TAR and FAR together), from (0, 0) to (1, 1)."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("an ROC needs both genuine and impostor pairs")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp, fp = np.cumsum(y)[last_of_tie], np.cumsum(~y)[last_of_tie]
    return Roc(
        far=np.r_[0.0, fp / (~same).sum()],
        tar=np.r_[0.0, tp / same.sum()],
        thresholds=np.r_[np.inf, s[last_of_tie]],
    )


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The threshold t such that accepting `score > t` admits at most floor(far·n) of n impostors."""
    s = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise ValueError("no impostor scores to set a threshold on")
    allowed = int(np.floor(far * len(s) + 1e-9))
    return float(s[allowed]) if allowed < len(s) else -np.inf


def tar_at_far(genuine_scores: np.ndarray, impostor_scores: np.ndarray, far: float) -> float:
    """True-accept rate at the threshold that gives false-accept rate `far` on these impostors."""
    return float(np.mean(np.asarray(genuine_scores) > threshold_at_far(impostor_scores, far)))


@dataclass(frozen=True)
class FoldStats:
    mean: float
    std: float
    per_fold: tuple[float, ...]


def kfold_tar_at_far(
    reference_scores: np.ndarray, test_scores: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float
) -> FoldStats:
    """LFW-style TAR@FAR: for each fold, the threshold is set on the *reference* impostor scores of
    the other folds (original pairs), then applied to the *test* genuine scores of that fold.

    With test == reference this is plain cross-validated verification; with test = scores of
    anonymized pairs it measures how often a recognizer, tuned on real faces, still matches them.
    """
    same, folds = np.asarray(same, dtype=bool), np.asarray(folds)
    reference_scores, test_scores = np.asarray(reference_scores), np.asarray(test_scores)
    ids = np.unique(folds)
    if len(ids) < 2:
        raise ValueError("k-fold thresholds need at least two folds")
    rates = []
    for k in ids:
        t = threshold_at_far(reference_scores[(folds != k) & ~same], far)
        genuine = test_scores[(folds == k) & same]
        rates.append(float(np.mean(genuine > t)) if len(genuine) else float("nan"))
    return FoldStats(float(np.nanmean(rates)), float(np.nanstd(rates)), tuple(rates))


def rank1_accuracy(
    probes: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray
) -> float:
    """Closed-set identification: share of probes whose most similar gallery entry has their identity."""
    best = np.argmax(normalize_rows(probes) @ normalize_rows(gallery).T, axis=1)
    return float(np.mean(np.asarray(gallery_ids)[best] == np.asarray(probe_ids)))


# --- image fidelity --------------------------------------------------------------------------------


def _unit(images: Tensor) -> Tensor:
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)


def psnr(a: Tensor, b: Tensor) -> np.ndarray:
    """Per-image PSNR in dB on the [0, 1] scale, capped at `PSNR_CAP_DB` (identical images)."""
    mse = (_unit(a) - _unit(b)).pow(2).flatten(1).mean(1).double().numpy()
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP_DB)


def ssim(a: Tensor, b: Tensor) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004: Gaussian window σ=1.5, K1=0.01, K2=0.03), colour channels
    averaged, computed by scikit-image on the [0, 1] scale."""
    x, y = _unit(a).permute(0, 2, 3, 1).numpy(), _unit(b).permute(0, 2, 3, 1).numpy()
    return np.array(
        [
            structural_similarity(
                xi,
                yi,
                data_range=1.0,
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for xi, yi in zip(x, y, strict=True)
        ],
        dtype=np.float64,
    )


def mae(a: Tensor, b: Tensor) -> np.ndarray:
    """Per-image mean absolute error on the [0, 1] scale."""
    return (_unit(a) - _unit(b)).abs().flatten(1).mean(1).double().numpy()


# --- payload ---------------------------------------------------------------------------------------


def bit_error_rate(sent: np.ndarray, received: np.ndarray) -> np.ndarray:
    """Per-row share of bits that differ ([B, n] arrays of 0/1 or bool)."""
    return np.mean(np.asarray(sent, dtype=bool) != np.asarray(received, dtype=bool), axis=1)


def verified_rate(verified: np.ndarray) -> float:
    """Share of faces whose payload authenticated (NaN when there are none)."""
    v = np.asarray(verified, dtype=bool)
    return float(v.mean()) if v.size else float("nan")


# --- geometry (utility) ----------------------------------------------------------------------------


def landmark_nme(
    pred: np.ndarray, ref: np.ndarray, eye_indices: tuple[int, int] = MEDIAPIPE_OUTER_EYE_CORNERS
) -> np.ndarray:
    """Per-face mean 2D landmark distance divided by the reference outer-eye-corner distance."""
    p, r = np.asarray(pred, dtype=np.float64)[..., :2], np.asarray(ref, dtype=np.float64)[..., :2]
    ocular = np.linalg.norm(r[:, eye_indices[0]] - r[:, eye_indices[1]], axis=1)
    return np.linalg.norm(p - r, axis=2).mean(axis=1) / np.maximum(ocular, 1e-12)


def pose_error(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-face absolute (yaw, pitch, roll) error in degrees, wrapped to [0, 180]."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    return np.abs((d + 180.0) % 360.0 - 180.0)


def blendshape_l1(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-face mean absolute difference of expression (blendshape) scores."""
    return np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).mean(axis=1)


# --- realism ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kid:
    mean: float
    std: float
    subset_size: int
    n_subsets: int


def kid(x: np.ndarray, y: np.ndarray, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> Kid:
    """Kernel Inception Distance (Bińkowski et al. 2018) between two feature sets: the unbiased MMD²
    with the cubic polynomial kernel (x·y/d + 1)³, averaged over random subsets drawn without
    replacement; the subset size shrinks to the smaller set when needed."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least two samples on each side")
    d, rng = x.shape[1], np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        a, b = x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
        kaa, kbb, kab = ((a @ a.T / d + 1) ** 3), ((b @ b.T / d + 1) ** 3), ((a @ b.T / d + 1) ** 3)
        within = (kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        values.append(within - 2 * kab.mean())
    return Kid(float(np.mean(values)), float(np.std(values)), m, n_subsets)
