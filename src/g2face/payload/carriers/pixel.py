"""In-pixel payload carrier: the payload's bits in the luminance DCT of the face's 8×8 blocks.

Training-free and blind. Every byte of the payload goes into one 8×8 block of the image's *own*
grid (the grid a JPEG encoder of this image uses), by dithered quantisation-index modulation
(QIM) of 8 mid-frequency DCT coefficients of the luminance Y = 0.299 R + 0.587 G + 0.114 B;
the change is added to R, G and B alike, so chroma is untouched. Blocks are laid out around an
anchor computed from the face's 5 landmarks, so a reader that re-detects the face finds them
again; docs/pixel-payload.md has the layout, the search and the measured figures.

Layout (public, fixed per `layout_key`; the salt travels inside the frame, so nothing here may
depend on it): cells are block offsets from the anchor's block, ordered by elliptical distance
(the face is taller than wide). Cell n carries byte `perm_c[n mod n_bytes]` of copy
c = n // n_bytes, one keyed permutation per copy. The first copy sits in the middle of the face,
further copies ring it; blocks outside the allowed mask (or only partly inside, where the change
cannot be confined to the allowed pixels cheaply) are skipped, and their bytes reach the reader
as erasures, which the payload's Reed-Solomon code repairs (an erasure costs
half an error), so a face somewhat too small for one whole frame still carries it.

Reading needs no side information: (1) the grid phase (image cropped by a non-multiple of 8)
and the scale (image resized) are found by how well the blocks' coefficients sit on the QIM
lattice, which does not depend on the bits; (2) the anchor block is searched a few blocks
around the re-detected one; each candidate's soft bits go to the codec, and the payload's MAC
says which candidate is right.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import shake_256

import cv2
import numpy as np

from g2face.payload.codec import MAGIC, DecodedPayload, PayloadCodec
from g2face.payload.ecc import UncorrectableError
from g2face.payload.errors import PayloadError
from g2face.payload.secret import Secret
from g2face.types import FaceDetection

BLOCK = 8
# (vertical, horizontal) frequency of the 8 coefficients that carry one byte per block: low enough
# that JPEG q75 quantises them with steps <= 8 (below the QIM tolerance step/4 = 5), high enough
# that the change looks like fine skin texture rather than 8×8 tiles.
CARRIER_COEFFICIENTS = ((0, 2), (1, 1), (2, 0), (0, 3), (1, 2), (2, 1), (3, 0), (2, 2))
PUBLIC_LAYOUT_KEY = b"g2face pixel layout v1"
DEFAULT_STEP = 20.0
# Typical resize factors (output / original size) tried when the image is not at its original scale.
RESIZE_SCALES = (0.75, 0.5, 2 / 3, 0.8, 0.9, 1.25, 1.5, 2.0)

_LUMA = np.array([0.299, 0.587, 0.114])
# Unit-crop geometry of the face framing (g2face.align, which this layer may not import): the mask
# centre sits 0.13 eye-to-mouth lengths above the landmark centroid; the crop is 1 / 0.2571
# eye-to-mouth lengths wide; the paste mask's semi-axes are 0.37 and 0.43 crop widths.
_ANCHOR_ABOVE_CENTROID = 0.13
ANCHOR_DRIFT = 0.1
"""How far, in face widths, a re-detected face's anchor may lie from the embedder's: the fake face's
eyes and mouth are the render's, not the original's, so the detector's landmarks move with them
(up to 29 px on the 290 px wide Biden fixture with the session-11 default, whose render keeps more
of its own layout). The reader searches anchor blocks that far, and never fewer than 2 blocks."""
_CROP_PER_EYE_MOUTH = 1 / 0.2571
_MASK_SEMI_AXES = (0.37, 0.43)
_ELLIPSE_RATIO = _MASK_SEMI_AXES[1] / _MASK_SEMI_AXES[0]
_LOGIT_SCALE = 4.0
# Amplitude gains tried per coefficient when the image was resized (see `_gains`).
_GAINS = np.arange(0.6, 1.1001, 0.01)
# Relative per-axis scale corrections tried around a resize factor (see `_refine_scale`).
_SCALE_REFINEMENT = 1 + np.arange(-6, 7) * 0.001
# A resized reading must fit the lattice this much better than the image at its own scale
# (measured: 0.19-0.52 at the true scale after a resize, 0.11-0.13 for any scale without payload).
_RESIZED_FIT_MARGIN = 1.3
_FIT_RADIUS = 10  # blocks around the anchor that score a phase / scale: a 168 px square
# A block only partly inside the allowed mask carries a byte when confining the change to its allowed
# pixels costs at most this many times the change's energy in a whole block (see `_confinable`).
_MAX_CONFINED_COST = 4.0


def _resampled_luma(
    image: np.ndarray, scale_yx: np.ndarray, origin: np.ndarray, size: np.ndarray
) -> np.ndarray:
    """Luminance of original-scale pixels origin + [0, size) (y, x); NaN outside the image. Original
    pixel p sits at image pixel s·(p + ½) − ½ (the pixel-centre convention of Pillow and OpenCV)."""
    height, width = image.shape[:2]
    if (scale_yx == 1.0).all():
        luma = np.full(tuple(size), np.nan)
        ys, xs = max(origin[0], 0), max(origin[1], 0)
        ye, xe = min(origin[0] + size[0], height), min(origin[1] + size[1], width)
        if ye > ys and xe > xs:
            luma[ys - origin[0] : ye - origin[0], xs - origin[1] : xe - origin[1]] = (
                image[ys:ye, xs:xe].astype(np.float64) @ _LUMA
            )
        return luma
    sy, sx = scale_yx
    to_image = np.array([[sx, 0, sx * (origin[1] + 0.5) - 0.5], [0, sy, sy * (origin[0] + 0.5) - 0.5]])
    # only the part of the image the window maps to: a whole-image conversion costs more than the warp
    corners = np.array([[0, 0, 1], [size[1], size[0], 1]]) @ to_image.T
    x0, y0 = np.clip(np.floor(corners[0]).astype(int) - 4, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners[1]).astype(int) + 4, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return np.full(tuple(size), np.nan)
    source = image[y0:y1, x0:x1].astype(np.float32) @ _LUMA.astype(np.float32)
    to_image[:, 2] -= (x0, y0)
    return cv2.warpAffine(
        source,
        to_image,
        (int(size[1]), int(size[0])),
        flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=np.nan,
    ).astype(np.float64)


class FaceTooSmallError(PayloadError):
    """The face's allowed region has too few usable 8×8 blocks to carry the payload."""


@dataclass(frozen=True)
class PixelCapacity:
    blocks: int  # blocks the layout uses: whole blocks inside the allowed mask, and confinable partial ones
    n_bytes: int  # bytes in one frame
    bytes_carried: int  # distinct frame bytes carried at least once

    @property
    def coverage(self) -> float:
        return self.bytes_carried / self.n_bytes

    @property
    def copies(self) -> float:
        return self.blocks / self.n_bytes


@dataclass(frozen=True)
class PixelReadCandidate:
    logits: np.ndarray  # (n_bits,) float64, log P(1)/P(0) up to a scale; 0 = nothing read
    scale: tuple[float, float]  # (y, x) image size / original size assumed
    phase: tuple[int, int]  # (y, x) of the block grid, in original-scale pixels
    shift: tuple[int, int]  # (y, x) anchor-block offset from the re-detected one
    lattice_fit: float  # mean QIM lattice fit of the blocks at this scale and phase, in [-1, 1]


def face_anchor(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(anchor point (x, y), crop size in px) of a face from its 5 landmarks [5, 2]."""
    points = np.asarray(points, dtype=np.float64)
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    anchor = points.mean(0) - _ANCHOR_ABOVE_CENTROID * (mouth - eyes)
    return anchor, float(np.linalg.norm(mouth - eyes)) * _CROP_PER_EYE_MOUTH


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = np.arange(BLOCK)
    basis = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * BLOCK)) * np.sqrt(2 / BLOCK)
    basis[0] /= np.sqrt(2)
    return basis


def _block_dct(luma: np.ndarray) -> np.ndarray:
    """(H, W) with H, W multiples of 8 -> (H/8, W/8, 8, 8) orthonormal DCT-II per block (JPEG's)."""
    d = _dct_matrix()
    blocks = luma.reshape(luma.shape[0] // BLOCK, BLOCK, luma.shape[1] // BLOCK, BLOCK)
    return np.einsum("ui,aibj,vj->abuv", d, blocks, d, optimize=True)


@lru_cache(maxsize=16)
def _spiral(radius: int) -> np.ndarray:
    """Block offsets (dy, dx) with dx² + (dy / ratio)² <= radius², nearest first; a total order, so
    `_spiral(r)` is a prefix of `_spiral(R)` for r < R (embedder and reader may use different r)."""
    half_y = int(np.ceil(radius * _ELLIPSE_RATIO))
    dy, dx = np.mgrid[-half_y : half_y + 1, -radius : radius + 1]
    dy, dx = dy.ravel(), dx.ravel()
    dist = dx**2 + (dy / _ELLIPSE_RATIO) ** 2
    keep = dist <= radius**2
    dy, dx, dist = dy[keep], dx[keep], dist[keep]
    order = np.lexsort((dx, dy, dist))
    cells = np.stack([dy[order], dx[order]], axis=1)
    cells.setflags(write=False)
    return cells


class DctQimCarrier:
    """Dithered QIM of 8 luminance DCT coefficients per 8×8 block: one payload byte per block.

    `step` is the QIM step Δ in DCT units (orthonormal, 0-255 pixel scale): the two bit values sit
    Δ/2 apart, so a coefficient survives noise up to Δ/4; the change costs Δ²/12 per coefficient,
    8/64 of the block's energy: PSNR ≈ 41.9 dB at Δ = 20 where the payload is written.
    `min_coverage`: the least fraction of a frame's bytes a face must carry to be embedded at all
    (missing bytes are erasures for the Reed-Solomon code; 128-d: 84 parity bytes of 162, of which
    the decoder spends at most 68 on erasures).
    """

    def __init__(
        self,
        n_bits: int,
        *,
        step: float = DEFAULT_STEP,
        layout_key: bytes = PUBLIC_LAYOUT_KEY,
        coefficients: Sequence[tuple[int, int]] = CARRIER_COEFFICIENTS,
        min_coverage: float = 0.7,
    ):
        if len(coefficients) != 8:
            raise ValueError(f"one byte per block needs 8 coefficients, got {len(coefficients)}")
        if n_bits % 8:
            raise ValueError(f"n_bits must be whole bytes, got {n_bits}")
        if step <= 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.n_bits, self.n_bytes = n_bits, n_bits // 8
        self.step = float(step)
        self.layout_key = bytes(layout_key)
        self.coefficients = tuple((int(v), int(u)) for v, u in coefficients)
        self.min_coverage = min_coverage
        self._rows = np.array([v for v, _ in self.coefficients])
        self._cols = np.array([u for _, u in self.coefficients])
        # One dither per coefficient, spread over the half-step so that an all-zero block (flat
        # skin, or a JPEG that zeroed it) does not look like a carrier block to the lattice fit.
        self._dither = (np.arange(8) / 8) * (self.step / 2)
        self._permutations: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"DctQimCarrier(n_bits={self.n_bits}, step={self.step}, min_coverage={self.min_coverage})"

    # -- layout ------------------------------------------------------------------------------

    def _byte_of_cell(self, n_cells: int) -> np.ndarray:
        """Frame byte carried by each of the first `n_cells` spiral cells."""
        copies = -(-n_cells // self.n_bytes)
        perms = [self._permutation(c) for c in range(copies)]
        return np.concatenate(perms)[:n_cells]

    def _permutation(self, copy: int) -> np.ndarray:
        if copy not in self._permutations:
            # Hash-derived, so no library RNG release can change the layout.
            stream = shake_256(self.layout_key + b" copy " + str(copy).encode()).digest(4 * self.n_bytes)
            self._permutations[copy] = np.argsort(np.frombuffer(stream, ">u4"), kind="stable")
        return self._permutations[copy]

    def _plan(self, shape: tuple[int, ...], points: np.ndarray, allowed: np.ndarray):
        """Blocks (by, bx) the layout writes, the byte each carries, and each block's allowed
        pixels (n, 8, 8): whole blocks inside `allowed`, and blocks partly inside where the change
        can be confined to the allowed pixels at a bounded cost (`_confinable`)."""
        grid = allowed[: shape[0] // BLOCK * BLOCK, : shape[1] // BLOCK * BLOCK]
        grid = grid.reshape(shape[0] // BLOCK, BLOCK, shape[1] // BLOCK, BLOCK).transpose(0, 2, 1, 3)
        usable = grid.all(axis=(2, 3))
        partial = np.argwhere(grid.any(axis=(2, 3)) & ~usable)
        if len(partial):
            usable[tuple(partial.T)] = self._confinable(grid[tuple(partial.T)])
        anchor, _ = face_anchor(points)
        ax, ay = (anchor // BLOCK).astype(int)
        rows, cols = np.nonzero(usable)
        if rows.size == 0:
            return np.zeros((0, 2), int), np.zeros(0, int), np.zeros((0, BLOCK, BLOCK), bool)
        reach = max(np.abs(cols - ax).max(), np.ceil(np.abs(rows - ay).max() / _ELLIPSE_RATIO))
        cells = _spiral(int(reach) + 1)
        blocks = cells + np.array([ay, ax])
        inside = (blocks >= 0).all(1) & (blocks[:, 0] < usable.shape[0]) & (blocks[:, 1] < usable.shape[1])
        used = np.zeros(len(cells), bool)
        used[inside] = usable[blocks[inside, 0], blocks[inside, 1]]
        blocks = blocks[used]
        return blocks, self._byte_of_cell(len(cells))[used], grid[blocks[:, 0], blocks[:, 1]]

    def _confinable(self, masks: np.ndarray) -> np.ndarray:
        """Which partly allowed blocks (n, 8, 8) can carry a byte with the change confined to their
        allowed pixels: the minimum-norm change B_Sᵀ (B_S B_Sᵀ)⁻¹ Δc over the allowed pixels S costs
        at most 1 / λ_min(B_S B_Sᵀ) times the whole-block change; blocks where that exceeds
        `_MAX_CONFINED_COST` (too few pixels, or pixels that cannot express some coefficient) stay unused."""
        basis = self._basis()
        flat = masks.reshape(len(masks), -1).astype(np.float64)
        gram = np.einsum("kp,np,lp->nkl", basis, flat, basis)
        return np.linalg.eigvalsh(gram)[:, 0] >= 1 / _MAX_CONFINED_COST

    def _basis(self) -> np.ndarray:
        """(8, 64): the carrier coefficients' 2-D DCT basis images, flattened row-major."""
        d = _dct_matrix()
        return np.stack([np.outer(d[v], d[u]).ravel() for v, u in self.coefficients])

    def capacity(
        self, image_shape: tuple[int, ...], detection: FaceDetection, allowed: np.ndarray
    ) -> PixelCapacity:
        blocks, byte_index, _ = self._plan(image_shape, detection.points, np.asarray(allowed, bool))
        return PixelCapacity(len(blocks), self.n_bytes, len(np.unique(byte_index)))

    # -- embedding ---------------------------------------------------------------------------

    def embed(
        self, image: np.ndarray, detection: FaceDetection, allowed: np.ndarray, bits: np.ndarray
    ) -> np.ndarray:
        """A copy of `image` (uint8 RGB [H, W, 3]) carrying `bits` in the face's 8×8 blocks inside
        `allowed` (bool [H, W]), changing only allowed pixels; every other pixel stays bit-identical.

        Raises FaceTooSmallError when the face carries less than `min_coverage` of the frame.
        """
        image, allowed, bits = self._check_embed_inputs(image, allowed, bits)
        blocks, byte_index, block_masks = self._plan(image.shape, detection.points, allowed)
        coverage = len(np.unique(byte_index)) / self.n_bytes
        if coverage < self.min_coverage:
            raise FaceTooSmallError(
                f"face too small for the in-pixel payload: its region holds {len(blocks)} usable 8×8 blocks "
                f"({coverage:.0%} of the {self.n_bytes}-byte frame, needs {self.min_coverage:.0%}); "
                "the exact-recovery container still carries it"
            )
        targets_bits = bits.reshape(self.n_bytes, 8)[byte_index]  # (n_blocks, 8)
        y0, x0 = blocks.min(0) * BLOCK
        y1, x1 = (blocks.max(0) + 1) * BLOCK
        region = image[y0:y1, x0:x1].astype(np.float64)
        local = blocks - np.array([y0, x0]) // BLOCK
        coef = _block_dct(region @ _LUMA)[local[:, 0], local[:, 1]][:, self._rows, self._cols]
        targets = self._quantize(coef, targets_bits)
        out = region.copy()
        carried = image[y0:y1, x0:x1].copy()
        # Rounding to uint8 and clipping at 0/255 move the coefficients a little: measure the
        # residual on the rounded image and add it again, a few times.
        for _ in range(4):
            out = self._add_coefficients(out, local, block_masks, targets - coef)
            carried = np.clip(np.rint(out), 0, 255).astype(np.uint8)
            coef = _block_dct(carried.astype(np.float64) @ _LUMA)[local[:, 0], local[:, 1]][
                :, self._rows, self._cols
            ]
            if np.abs(targets - coef).max() < self.step / 16:
                break
        # Pixels of unused blocks were never changed, so they round back to themselves exactly.
        result = image.copy()
        result[y0:y1, x0:x1] = carried
        return result

    def _check_embed_inputs(self, image, allowed, bits):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != image.shape[:2]:
            raise ValueError(f"allowed mask {allowed.shape} does not match the image {image.shape[:2]}")
        bits = np.asarray(bits).ravel()
        if bits.shape != (self.n_bits,) or not np.isin(bits, (0, 1)).all():
            raise ValueError(f"bits must be {self.n_bits} values in {{0, 1}}, got shape {bits.shape}")
        return image, allowed, bits.astype(np.uint8)

    def _quantize(self, coef: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Nearest point of the bit's coset Δ·Z + bit·Δ/2 + dither."""
        offset = bits * (self.step / 2) + self._dither
        return np.round((coef - offset) / self.step) * self.step + offset

    def _add_coefficients(
        self, region: np.ndarray, local: np.ndarray, masks: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """Move each block's carrier coefficients by `delta` (n, 8) with the least change of its
        allowed pixels (`masks`, n × 8 × 8); for a whole block that is the inverse DCT of `delta`."""
        basis = self._basis()
        flat = masks.reshape(len(masks), -1).astype(np.float64)
        restricted = basis[None] * flat[:, None, :]  # (n, 8, 64): B_S, zero outside the allowed pixels
        gram = np.einsum("nkp,nlp->nkl", restricted, restricted)
        pixels = np.einsum("nkp,nk->np", restricted, np.linalg.solve(gram, delta[..., None])[..., 0])
        out = region.copy()
        for (by, bx), change in zip(local, pixels.reshape(-1, BLOCK, BLOCK), strict=True):
            out[by * BLOCK : (by + 1) * BLOCK, bx * BLOCK : (bx + 1) * BLOCK] += change[..., None]
        return out

    # -- reading -----------------------------------------------------------------------------

    def _soft_blocks(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per block: soft bits in [-1, 1] (+1 = bit 1) and a weight in [0, 1], how well all 8
        coefficients sit on the lattice (≈ 0 for a block that carries nothing)."""
        phase = 2 * np.pi * (coef - self._dither) / self.step
        fit = np.cos(2 * phase).mean(-1)
        return -np.cos(phase), np.clip(fit, 0, 1)

    def _luma_window(
        self, image: np.ndarray, detection: FaceDetection, scale: tuple[float, float], shifts: int
    ):
        """Luminance around the face resampled to the original scale, as (window, origin (y, x),
        anchor (x, y), cells), the window's origin a multiple of 8 in original pixels.
        `scale`: (y, x) image size / original size."""
        scale_yx = np.asarray(scale, dtype=np.float64)
        anchor, crop = face_anchor(detection.points)
        anchor, crop = (anchor + 0.5) / scale_yx[::-1] - 0.5, crop / scale_yx.mean()
        radius = int(np.ceil(max(_MASK_SEMI_AXES) * crop / BLOCK / _ELLIPSE_RATIO)) + 1
        cells = _spiral(radius)
        reach = (np.abs(cells).max(0) + shifts + 2) * BLOCK  # (y, x)
        origin = ((anchor[::-1] - reach) // BLOCK * BLOCK).astype(int)
        size = 2 * reach + 2 * BLOCK
        return _resampled_luma(image, scale_yx, origin, size), origin, anchor, cells

    def _refine_scale(
        self, image: np.ndarray, detection: FaceDetection, scale: float, phase: tuple[int, int]
    ) -> tuple[float, float]:
        """(y, x) scales near `scale` that fit the lattice best, one axis at a time: an output size
        rounded to whole pixels makes the two differ by up to 0.5 px over the image, which is
        enough to blur the coefficients (measured: 20 % bit errors at 0.75× vs 5 % refined)."""
        anchor, _ = face_anchor(detection.points)
        best = [scale, scale]
        for axis in (1, 0):
            fits = {}
            for factor in _SCALE_REFINEMENT:
                trial = list(best)
                trial[axis] = scale * factor
                centre = (anchor[::-1] + 0.5) / np.array(trial) - 0.5
                origin = ((centre // BLOCK - _FIT_RADIUS) * BLOCK).astype(int)
                luma = _resampled_luma(
                    image, np.array(trial), origin, np.full(2, (2 * _FIT_RADIUS + 2) * BLOCK)
                )
                coef, valid = self._grid(self._coefficient_maps(luma), phase)
                fits[trial[axis]] = float(self._soft_blocks(coef[valid])[1].mean()) if valid.any() else 0.0
            best[axis] = max(fits, key=fits.get)
        return float(best[0]), float(best[1])

    def _coefficient_maps(self, luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 8 carrier coefficients of the 8×8 block starting at every pixel, (H-7, W-7, 8), and
        whether that block lies inside the image: every grid phase is then a strided view."""
        d = _dct_matrix()
        inside = ~np.isnan(luma)
        filled = np.where(inside, luma, 0.0)
        height, width = luma.shape[0] - BLOCK + 1, luma.shape[1] - BLOCK + 1
        maps = np.empty((height, width, len(self.coefficients)))
        for k, (v, u) in enumerate(self.coefficients):
            # correlation with the (separable) basis, its top-left at the output pixel: the block DCT there
            maps[..., k] = cv2.sepFilter2D(
                filled, cv2.CV_64F, d[u], d[v], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT
            )[:height, :width]
        box = np.ones(BLOCK)
        ones = cv2.sepFilter2D(
            inside.astype(np.float64), cv2.CV_64F, box, box, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT
        )[:height, :width]
        return maps, ones > BLOCK * BLOCK - 0.5

    @staticmethod
    def _grid(maps: tuple[np.ndarray, np.ndarray], phase: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (by, bx, 8) and validity (by, bx) of the blocks on the grid with this phase."""
        coef, valid = maps
        return coef[phase[0] :: BLOCK, phase[1] :: BLOCK], valid[phase[0] :: BLOCK, phase[1] :: BLOCK]

    def _gains(self, coef: np.ndarray, valid: np.ndarray, centre_block: np.ndarray) -> np.ndarray:
        """Per coefficient, the gain that puts the blocks near the anchor best on the lattice:
        resampling filters attenuate each frequency differently, and QIM reads amplitudes."""
        by, bx = np.nonzero(valid)
        near = (np.abs(by - centre_block[0]) <= _FIT_RADIUS) & (np.abs(bx - centre_block[1]) <= _FIT_RADIUS)
        sample = coef[by[near], bx[near]]  # (n, 8)
        if not len(sample):
            return np.ones(len(self.coefficients))
        phase = 4 * np.pi * (_GAINS[:, None, None] * sample[None] - self._dither) / self.step
        return _GAINS[np.cos(phase).mean(1).argmax(0)]

    def _phase_fits(self, luma: np.ndarray, centre_block: np.ndarray) -> dict[tuple[int, int], float]:
        """Mean lattice fit, for every grid phase, of the blocks within `_FIT_RADIUS` of the anchor."""
        y0, x0 = np.maximum((centre_block - _FIT_RADIUS) * BLOCK, 0)
        y1, x1 = (centre_block + _FIT_RADIUS + 2) * BLOCK
        maps = self._coefficient_maps(luma[y0:y1, x0:x1])
        fits = {}
        for phase in itertools.product(range(BLOCK), repeat=2):
            coef, valid = self._grid(maps, phase)
            fits[phase] = float(self._soft_blocks(coef[valid])[1].mean()) if valid.any() else 0.0
        return fits

    def read(
        self,
        image: np.ndarray,
        detection: FaceDetection,
        *,
        scales: Sequence[float] = (1.0,),
        max_shift: int = 2,
        phases_per_scale: int = 2,
        max_scales: int = 2,
    ) -> Iterator[PixelReadCandidate]:
        """Candidate soft bits for the payload of the face `detection` (re-detected in `image`).

        Of `scales` (image / original size), the `max_scales` whose blocks fit the QIM lattice best,
        best first, each refined per axis; for each, the `phases_per_scale` best grid phases; for
        each, anchor-block shifts up to `max_shift` blocks, nearest first. Copies are summed per bit.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        shifts = sorted(
            itertools.product(range(-max_shift, max_shift + 1), repeat=2),
            key=lambda s: (s[0] ** 2 + s[1] ** 2, s),
        )
        coarse = []
        for scale in scales:
            luma, origin, anchor, cells = self._luma_window(image, detection, (scale, scale), max_shift)
            fits = self._phase_fits(luma, ((anchor[::-1] - origin) // BLOCK).astype(int))
            coarse.append((max(fits.values()), float(scale), fits, (luma, origin, anchor, cells)))
        coarse.sort(key=lambda w: -w[0])
        windows = []
        for _, scale, fits, (luma, origin, anchor, cells) in coarse[:max_scales]:
            scale_yx = (scale, scale)
            if scale != 1.0:
                scale_yx = self._refine_scale(image, detection, scale, max(fits, key=fits.get))
                luma, origin, anchor, cells = self._luma_window(image, detection, scale_yx, max_shift)
                fits = self._phase_fits(luma, ((anchor[::-1] - origin) // BLOCK).astype(int))
            best = sorted(fits, key=fits.get, reverse=True)[:phases_per_scale]
            # a runner-up far below the best is the JPEG grid or noise, not a second candidate
            best = [p for p in best if fits[p] >= 0.5 * fits[best[0]]]
            windows.append((scale_yx, luma, origin, anchor, cells, best, fits))
        for scale, luma, origin, anchor, cells, best, fits in windows:
            byte_of_cell = self._byte_of_cell(len(cells))
            maps = self._coefficient_maps(luma)
            for phase in best:
                coef, valid = self._grid(maps, phase)
                anchor_block = ((anchor[::-1] - origin - np.array(phase)) // BLOCK).astype(int)
                if scale != (1.0, 1.0):
                    coef = coef * self._gains(coef, valid, anchor_block)
                soft, weight = self._soft_blocks(coef)
                weighted = np.where(valid[..., None], soft * weight[..., None], 0.0)
                for shift in shifts:
                    blocks = cells + anchor_block + np.array(shift)
                    inside = (
                        (blocks >= 0).all(1) & (blocks[:, 0] < coef.shape[0]) & (blocks[:, 1] < coef.shape[1])
                    )
                    logits = np.zeros((self.n_bytes, 8))
                    np.add.at(logits, byte_of_cell[inside], weighted[blocks[inside, 0], blocks[inside, 1]])
                    yield PixelReadCandidate(
                        logits=_LOGIT_SCALE * logits.ravel(),
                        scale=scale,
                        phase=(int(phase[0]), int(phase[1])),  # the window's origin is on the grid
                        shift=shift,
                        lattice_fit=fits[phase],
                    )


def _header_score(codec: PayloadCodec, logits: np.ndarray) -> float:
    """Soft agreement with the frame's fixed magic + version bits (docs/payload-format.md:
    channel byte j is byte j // m of codeword j mod m, so frame bytes 0 and 1 are channel 0, m)."""
    expected = np.unpackbits(np.array([MAGIC, codec.version << 4], np.uint8))[:12].astype(np.float64)
    positions = np.concatenate([np.arange(8), codec.ecc.codewords * 8 + np.arange(4)])
    return float(((2 * expected - 1) * np.tanh(logits[positions] / 2)).sum())


def read_payload(
    image: np.ndarray,
    detection: FaceDetection,
    codec: PayloadCodec,
    secret: Secret,
    carrier: DctQimCarrier | None = None,
    *,
    search_resized: bool = True,
    max_shift: int | None = None,
    attempts_per_phase: int = 3,
) -> DecodedPayload | None:
    """The payload of this face, or None when none is found.

    First at the image's own scale; then, with `search_resized`, at the `RESIZE_SCALES` that fit
    the lattice best (~1-2 s more, only when the first pass finds nothing). Candidates of one scale
    and grid phase are ranked by how well they agree with the frame's fixed header bits, and the
    best `attempts_per_phase` go to the Reed-Solomon decoder (pure Python, ~0.1 s per failed
    attempt). The first the code repairs is the payload (a wrong layout guess does not pass the
    code's spare parity): it comes back with `verified` from its MAC, so a wrong secret yields
    `verified=False`, and a password's KDF runs only for a real payload.
    """
    carrier = carrier or DctQimCarrier(codec.n_bits)
    if max_shift is None:  # anchor blocks searched: `ANCHOR_DRIFT` of the face's width, at least 2
        width = float(detection.box[2] - detection.box[0])
        max_shift = max(2, math.ceil(ANCHOR_DRIFT * width / BLOCK))
    own_scale_fit = 0.0
    for scales in ((1.0,), RESIZE_SCALES) if search_resized else ((1.0,),):
        candidates = carrier.read(image, detection, scales=scales, max_shift=max_shift)
        for (scale, _), group in itertools.groupby(candidates, key=lambda c: (c.scale, c.phase)):
            group = list(group)
            if scale == (1.0, 1.0):
                own_scale_fit = max(own_scale_fit, group[0].lattice_fit)
            elif group[0].lattice_fit < _RESIZED_FIT_MARGIN * own_scale_fit:
                continue  # no better on the lattice than the image as it is: noise, not a payload
            ranked = sorted(group, key=lambda c: -_header_score(codec, c.logits))
            for candidate in ranked[:attempts_per_phase]:
                probs = 0.5 * (1 + np.tanh(0.5 * candidate.logits))
                try:
                    codec.ecc.decode(probs)
                except UncorrectableError:
                    continue
                try:
                    return codec.decode(probs, secret)
                except PayloadError:
                    continue
    return None
