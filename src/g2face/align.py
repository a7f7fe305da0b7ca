"""Face alignment to the FFHQ framing, soft face masks and paste-back (numpy + OpenCV only).

Every generator and prior in g2face sees faces the way FFHQ framed them. A face is aligned by the
least-squares similarity (rotation, uniform scale, translation) that maps its 5 detected landmarks
onto `FFHQ_TEMPLATE`; the crop is pasted back through the inverse similarity, blended with a soft
elliptical mask, and only where that mask is non-zero, so every other pixel is left bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from g2face.types import AlignedFace, FaceDetection, Footprint

DEFAULT_CROP_SIZE = 256

# 5-point template (right eye, left eye, nose, mouth right, mouth left) in unit crop coordinates:
# pixel p of an S-pixel crop sits at (p + 0.5) / S, so the same numbers serve every crop size.
# Derived by scripts/derive_ffhq_template.py: YuNet (the detector that feeds this aligner) run on
# the 10 FFHQ-aligned 256 px samples of ../shared/data/ffhq_samples and their mirror images, points
# averaged. Refitting each sample to it leaves an RMS landmark residual of 4.8 px at 256 px and
# moves the crop corners 16 px on average (worst 34 px, a strongly turned face) from the true FFHQ
# crop: FFHQ frames with a pose-dependent recipe that no fixed 5-point similarity follows exactly
# (exact 68-point landmarks in the same fit still leave 11 px).
FFHQ_TEMPLATE = np.array(
    [
        [0.3814, 0.4622],
        [0.6186, 0.4622],
        [0.5000, 0.6071],
        [0.4017, 0.7193],
        [0.5983, 0.7193],
    ],
    dtype=np.float64,
)
FFHQ_TEMPLATE.setflags(write=False)

# Soft mask: an ellipse (centre, semi-axes in unit crop coordinates) covering the FFHQ face from
# forehead to chin; weight 1 inside `_MASK_CORE` of its normalised radius, easing to exactly 0 at
# the rim, which stays inside the crop so paste-back never touches pixels beyond it.
_MASK_CENTRE = (0.5, 0.56)
_MASK_AXES = (0.37, 0.43)
_MASK_CORE = 0.7


def template_points(size: int = DEFAULT_CROP_SIZE, template: np.ndarray = FFHQ_TEMPLATE) -> np.ndarray:
    """The template in pixel coordinates of a `size` × `size` crop."""
    return template * size - 0.5


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping points `src` [N, 2] onto `dst` [N, 2], as 2×3.

    In complex numbers a similarity is z -> a z + b, so the fit is a one-variable linear regression.
    """
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    zs_c, zd_c = zs - zs.mean(), zd - zd.mean()
    a = np.vdot(zs_c, zd_c) / np.vdot(zs_c, zs_c).real
    b = zd.mean() - a * zs.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to points [N, 2]."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2×3 matrix of `outer ∘ inner`."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def warp_affine(
    src: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LANCZOS4,
    border: int = cv2.BORDER_REFLECT_101,
) -> np.ndarray:
    """`cv2.warpAffine` into a (width, height) canvas, antialiased when the warp shrinks.

    A shrinking warp first reduces the source region it reads with area averaging, so a large face
    becomes a clean crop instead of an aliased one; coordinates stay exact.
    """
    width, height = size
    inverse = invert_affine(matrix)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.75:
        corners = transform_points(np.array([[0, 0], [width, 0], [0, height], [width, height]]), inverse)
        pad = int(np.ceil(3 / scale)) + 2
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - pad, 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + pad, src.shape[1])
        y1 = min(int(np.ceil(corners[:, 1].max())) + pad, src.shape[0])
        if x1 > x0 and y1 > y0:
            region = src[y0:y1, x0:x1]
            new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
            # resized pixel r covers source x0 + (r + 0.5) / f - 0.5 (OpenCV's pixel-centre convention)
            to_src = np.array([[1 / fx, 0, x0 + 0.5 / fx - 0.5], [0, 1 / fy, y0 + 0.5 / fy - 0.5]])
            src, matrix = small, compose_affine(matrix, to_src)
    return cv2.warpAffine(src, matrix, (width, height), flags=interpolation, borderMode=border)


def alignment_matrix(detection: FaceDetection, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """2×3 similarity taking image coordinates to the `size` px FFHQ-framed crop of this face."""
    return estimate_similarity(detection.points, template_points(size))


PROFILE_EYE_SPAN = 0.2
"""`seen_in_profile`: the detector's two eyes, measured across the face, closer together than
this fraction of the box's longer side (eye span over box width on faces the geometry prior reads
under 10 degrees of yaw: 0.40-0.51, 5th-95th percentile; boxes are taller than wide) ..."""
PROFILE_NOSE_OUTSIDE = 0.5
"""... and its nose further outside the eyes' span than this many spans (on a frontal or
half-turned face the nose lies between the eyes)."""


def seen_in_profile(detection: FaceDetection) -> bool:
    """The detector's five points show a profile: the eyes nearly on top of each other with the
    nose beside both. The geometry prior's yaw can read such a face as 31-38 degrees (hamilton: a
    profile given a frontal fake). Of 925 faces (LFW, CelebA, frames of five clips;
    `scripts/study_profile_cue.py`) it flags none the prior reads under 10 degrees, one (a 30 px
    background face) of 341 at 10-30, 12 of 42 at 30-40 (9 of them hamilton's profile)."""
    points = detection.points
    # across the face, not across the photo: a face lying on its side has its eyes stacked in x
    down = points[3:5].mean(0) - points[:2].mean(0)
    length = float(np.hypot(*down))
    across = np.array([down[1], -down[0]]) / length if length > 1e-6 else np.array([1.0, 0.0])
    position = points @ across
    eyes = np.sort(position[:2])
    span = float(eyes[1] - eyes[0])
    width = float(max(detection.width, detection.height))
    if width <= 0 or span >= PROFILE_EYE_SPAN * width:
        return False
    nose = float(position[2])
    outside = max(eyes[0] - nose, nose - eyes[1], 0.0)
    return outside > PROFILE_NOSE_OUTSIDE * max(span, 1e-6)


def crop_source_width(detection: FaceDetection, size: int = DEFAULT_CROP_SIZE) -> float:
    """How many pixels of the photo the `size` px crop of this face spans across: under `size`
    when the face was small and its crop upsampled (`nn.crops.at_source_resolution`)."""
    matrix = alignment_matrix(detection, size)
    return size / float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def align_face(image: np.ndarray, detection: FaceDetection, size: int = DEFAULT_CROP_SIZE) -> AlignedFace:
    """Crop one face from an RGB uint8 image [H, W, 3] into the FFHQ framing at `size` px."""
    matrix = alignment_matrix(detection, size)
    crop = warp_affine(image, matrix, (size, size))
    return AlignedFace(crop=crop, matrix=matrix, inverse=invert_affine(matrix), detection=detection)


@lru_cache(maxsize=8)
def _face_mask(size: int) -> np.ndarray:
    centre = (np.arange(size) + 0.5) / size
    dx = (centre[None, :] - _MASK_CENTRE[0]) / _MASK_AXES[0]
    dy = (centre[:, None] - _MASK_CENTRE[1]) / _MASK_AXES[1]
    t = np.clip((1 - np.sqrt(dx**2 + dy**2)) / (1 - _MASK_CORE), 0, 1)
    mask = (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible seam at either edge
    mask.setflags(write=False)
    return mask


def face_mask(size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Soft face mask in crop coordinates: float32 [size, size] in [0, 1], 0 near the crop border."""
    return _face_mask(size)


HEAD_MASK_FEATHER = 0.1
"""`head_mask`: the fraction of the crop's side over which it eases from 0 at the border to 1."""


@lru_cache(maxsize=8)
def _head_mask(size: int) -> np.ndarray:
    index = np.arange(size)
    # 0 on the border pixels (nothing outside the crop is touched), 1 a feather in
    edge = np.minimum(index, size - 1 - index) / (HEAD_MASK_FEATHER * size)
    t = np.clip(np.minimum(edge[None, :], edge[:, None]), 0, 1)
    mask = (t * t * (3 - 2 * t)).astype(np.float32)
    mask.setflags(write=False)
    return mask


def head_mask(size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Soft mask of the whole aligned crop (the head with its hair, and what is around it):
    float32 [size, size], 1 inside, easing to 0 at the border over `HEAD_MASK_FEATHER`."""
    return _head_mask(size)


def face_mask_in_image(
    image_shape: tuple[int, ...], detection: FaceDetection, size: int = DEFAULT_CROP_SIZE
) -> np.ndarray:
    """The weight `paste_faces` blends this face's crop with, in image coordinates: float32 [H, W].

    `mask == 1` is the core that the pasted crop replaces entirely; `mask > 0` every pixel it touches.
    """
    height, width = image_shape[:2]
    to_image = invert_affine(alignment_matrix(detection, size))
    return cv2.warpAffine(
        face_mask(size), to_image, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def paste_faces(
    image: np.ndarray,
    crops: Sequence[np.ndarray],
    faces: Sequence[AlignedFace],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Composite processed crops back into a copy of `image`, in the given order.

    Each crop [S, S, 3] uint8 goes through its face's inverse similarity and is blended with the soft
    mask (default `face_mask(S)`); pixels where every warped mask is 0 are copied unchanged.
    """
    if len(crops) != len(faces):
        raise ValueError(f"{len(crops)} crops for {len(faces)} faces")
    out = image.copy()
    height, width = image.shape[:2]
    for crop, face in zip(crops, faces, strict=True):
        size = crop.shape[0]
        if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crop must be uint8 [S, S, 3], got {crop.dtype} {crop.shape}")
        face_weight = face_mask(size) if mask is None else mask
        rows, cols = np.nonzero(face_weight)
        support = np.array([[cols.min(), rows.min()], [cols.max(), rows.max()]], dtype=np.float64)
        corners = transform_points(_box_corners(support), face.inverse)
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + 2, width)
        y1 = min(int(np.ceil(corners[:, 1].max())) + 2, height)
        if x1 <= x0 or y1 <= y0:
            continue
        to_region = face.inverse - np.array([[0, 0, x0], [0, 0, y0]])
        region_size = (x1 - x0, y1 - y0)
        weight = warp_affine(
            face_weight, to_region, region_size, interpolation=cv2.INTER_LINEAR, border=cv2.BORDER_CONSTANT
        )
        inside = weight > 0
        if not inside.any():
            continue
        pasted = warp_affine(crop, to_region, region_size).astype(np.float32)
        region = out[y0:y1, x0:x1]
        w = weight[inside][:, None]
        blended = region[inside].astype(np.float32) * (1 - w) + pasted[inside] * w
        region[inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _laplacian_blend(base: np.ndarray, top: np.ndarray, weight: np.ndarray, levels: int) -> np.ndarray:
    """Multi-band blend (Burt & Adelson): each frequency band of `top` over `base` with the weight
    blurred to that band's scale, so coarse colour differences fade over a wide band and fine
    detail switches over a narrow one. Float32 arrays [H, W, C] and [H, W]."""
    gauss_w, lap_base, lap_top = [weight], [], []
    cur_b, cur_t = base, top
    for _ in range(levels):
        down_b, down_t = cv2.pyrDown(cur_b), cv2.pyrDown(cur_t)
        size = (cur_b.shape[1], cur_b.shape[0])
        lap_base.append(cur_b - cv2.pyrUp(down_b, dstsize=size))
        lap_top.append(cur_t - cv2.pyrUp(down_t, dstsize=size))
        gauss_w.append(cv2.pyrDown(gauss_w[-1]))
        cur_b, cur_t = down_b, down_t
    w = gauss_w[-1][..., None]
    out = cur_b * (1 - w) + cur_t * w
    for lb, lt, gw in zip(reversed(lap_base), reversed(lap_top), reversed(gauss_w[:-1]), strict=True):
        out = cv2.pyrUp(out, dstsize=(lb.shape[1], lb.shape[0]))
        g = gw[..., None]
        out = out + lb * (1 - g) + lt * g
    return out


def _box_corners(box: np.ndarray) -> np.ndarray:
    """The 4 corners of a box [[x0, y0], [x1, y1]]."""
    return np.array([box[0], [box[1, 0], box[0, 1]], [box[0, 0], box[1, 1]], box[1]])


def blend_faces(
    image: np.ndarray,
    crops: Sequence[np.ndarray],
    faces: Sequence[AlignedFace],
    masks: Sequence[np.ndarray],
    *,
    band_width: float = 0.08,
) -> tuple[np.ndarray, list[Footprint]]:
    """Composite crops into a copy of `image` with per-face soft masks (crop coordinates) and a
    multi-band blend done at the image's own resolution.

    `band_width` (in crop widths) sets how many pyramid levels the blend uses. Pixels where the
    warped mask is 0 are copied unchanged; the footprints say which pixels may differ.
    """
    if not len(crops) == len(faces) == len(masks):
        raise ValueError(f"{len(crops)} crops, {len(faces)} faces, {len(masks)} masks")
    out = image.copy()
    height, width = image.shape[:2]
    footprints: list[Footprint] = []
    for crop, face, mask in zip(crops, faces, masks, strict=True):
        size = crop.shape[0]
        if crop.shape != (size, size, 3) or crop.dtype != np.uint8 or mask.shape != (size, size):
            raise ValueError(
                f"crop must be uint8 [S, S, 3] with a mask [S, S], got {crop.shape} {mask.shape}"
            )
        rows, cols = np.nonzero(mask > 0)
        if len(rows) == 0:
            footprints.append(Footprint(0, 0, np.zeros((0, 0), bool)))
            continue
        support = np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]], dtype=np.float64)
        corners = transform_points(_box_corners(support), face.inverse)
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + 2, width)
        y1 = min(int(np.ceil(corners[:, 1].max())) + 2, height)
        if x1 <= x0 or y1 <= y0:
            footprints.append(Footprint(0, 0, np.zeros((0, 0), bool)))
            continue
        to_region = face.inverse - np.array([[0, 0, x0], [0, 0, y0]])
        region_size = (x1 - x0, y1 - y0)
        weight = warp_affine(
            mask.astype(np.float32),
            to_region,
            region_size,
            interpolation=cv2.INTER_LINEAR,
            border=cv2.BORDER_CONSTANT,
        )
        inside = weight > 0
        if not inside.any():
            footprints.append(Footprint(0, 0, np.zeros((0, 0), bool)))
            continue
        pasted = warp_affine(crop, to_region, region_size).astype(np.float32)
        region = out[y0:y1, x0:x1]
        scale = float(np.sqrt(abs(np.linalg.det(face.inverse[:, :2]))))  # image px per crop px
        band_px = band_width * size * scale
        levels = int(np.clip(np.floor(np.log2(max(band_px, 1.0))), 0, 6))
        base = region.astype(np.float32)
        # Outside the mask the blend's top layer is the original itself, so the low bands only carry
        # the face's own colour outward; the result is then faded in with the (steepened) mask, so it
        # meets the untouched pixels continuously.
        top = np.where(inside[..., None], pasted, base)
        blended = _laplacian_blend(base, top, weight, levels)
        fade = np.clip(weight * 4, 0, 1)[..., None]
        result = base + (blended - base) * fade
        region[inside] = np.clip(np.rint(result[inside]), 0, 255).astype(np.uint8)
        footprints.append(Footprint(int(x0), int(y0), inside))
    return out, footprints
