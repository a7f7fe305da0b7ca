"""Skin tone as the Individual Typology Angle (ITA) of the cheeks (numpy + OpenCV, no torch).

ITA = atan((L* - 50) / b*) in degrees, from CIE L*a*b* (D65): > 55 very light, 41-55 light,
28-41 intermediate, 10-28 tan, -30-10 brown, < -30 dark (Chardon et al., 1991). It is read on the
two cheeks, between the lower eyelid, the nasolabial fold and the jaw, away from eyebrows, beard
line, lips and the nose's highlight; the region is a polygon of MediaPipe face-mesh landmarks, so it
follows the face in any pose the mesh does.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# MediaPipe face-mesh indices of the cheek polygons, in order around each one: under the eye (117,
# 118 / 346, 347), along the nose (101, 36 / 330, 266), above the nasolabial fold (205 / 425), the
# cheek's lower outer corner (187 / 411) and the outer edge (123, 116 / 352, 345). The centre of
# each is the mesh's cheek point (50 / 280).
SUBJECT_RIGHT_CHEEK = (117, 118, 101, 36, 205, 187, 123, 116)
SUBJECT_LEFT_CHEEK = (346, 347, 330, 266, 425, 411, 352, 345)
CHEEK_POLYGONS = (SUBJECT_RIGHT_CHEEK, SUBJECT_LEFT_CHEEK)

TRIM_FRACTION = 0.1
"""Each end of the cheek pixels' L* range dropped before averaging: specular highlights at the top,
shadows, stubble and stray hair at the bottom."""

MIN_CHROMA = 1.0
"""Below this cheek chroma (sqrt(a*^2 + b*^2)) the photo is taken as colourless (greyscale), where
b* is noise and ITA meaningless; skin in colour photos has a chroma above 10."""

_SUBPIXEL_BITS = 4


def ita_degrees(lightness: float, b_star: float) -> float:
    """ITA of one L*, b* pair, in degrees (the defining formula; b* = 0 gives ±90)."""
    if b_star == 0:
        return math.copysign(90.0, lightness - 50)
    return math.degrees(math.atan((lightness - 50) / b_star))


def cheek_mask(
    size: int, landmarks: np.ndarray, polygons: tuple[tuple[int, ...], ...] = CHEEK_POLYGONS
) -> np.ndarray:
    """Boolean [size, size] mask of the cheek `polygons` (both, unless one is given); landmarks
    [>= 468, 2 or 3] in unit crop coordinates (x, y in [0, 1], as `MediaPipeGeometry` returns
    them)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] not in (2, 3):
        raise ValueError(f"landmarks must be MediaPipe face-mesh points [>= 468, 2 or 3], got {points.shape}")
    mask = np.zeros((size, size), dtype=np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    for polygon in polygons:
        pixels = points[list(polygon), :2] * size - 0.5  # unit -> pixel centres at integers
        cv2.fillPoly(mask, [np.round(pixels * scale).astype(np.int32)], 1, cv2.LINE_8, _SUBPIXEL_BITS)
    return mask.astype(bool)


def cheek_lab(
    crop: np.ndarray, landmarks: np.ndarray, trim: float = TRIM_FRACTION
) -> tuple[float, float, float]:
    """Trimmed-mean (L*, a*, b*) of the cheek pixels of an RGB uint8 crop [S, S, 3]."""
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"crop must be a square RGB uint8 image [S, S, 3], got {crop.dtype} {crop.shape}")
    mask = cheek_mask(crop.shape[0], landmarks)
    if mask.sum() < 10:
        raise ValueError("the cheek region has fewer than 10 pixels in this crop: is the face in it?")
    lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[mask]
    lightness, a_star, b_star = trimmed_lab_mean(lab, trim)
    return float(lightness), float(a_star), float(b_star)


def trimmed_lab_mean(lab: np.ndarray, trim: float = TRIM_FRACTION) -> np.ndarray:
    """Mean [3] of Lab pixels [N, 3] (any Lab scaling) without the `trim` fraction at each end of
    their lightness range."""
    low, high = np.quantile(lab[:, 0], [trim, 1 - trim])
    return lab[(lab[:, 0] >= low) & (lab[:, 0] <= high)].mean(axis=0)


def skin_tone_ita(crop: np.ndarray, landmarks: np.ndarray, trim: float = TRIM_FRACTION) -> float:
    """Individual Typology Angle (degrees) of the cheeks of an RGB uint8 face crop [S, S, 3], given
    its MediaPipe landmarks [>= 468, 2 or 3] in unit crop coordinates; NaN for a greyscale photo."""
    lightness, a_star, b_star = cheek_lab(crop, landmarks, trim)
    if np.hypot(a_star, b_star) < MIN_CHROMA:
        return float("nan")
    return ita_degrees(lightness, b_star)
