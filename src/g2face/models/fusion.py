"""Geometric fusion (DESIGN.md §6): put a rendered face onto an aligned original crop with the
MediaPipe mesh of both, instead of the learned IFF masks.

All functions work on one aligned crop at a time in crop pixels (numpy + OpenCV):

1. `fit_render_to_original`: the similarity that lays the rendered face's mesh onto the original's
   (least squares over the stable, expression-insensitive mesh points).
2. `mesh_warp`: moves the rendered face part of the way (`strength`) towards the original's mesh.
   Strength 1 copies the original's facial layout, which carries identity; 0 keeps the rendered
   face's own proportions. A smooth displacement field, zero away from the face.
3. `transfer_colour`: the rendered face's skin colour matched to the original's bare skin (mesh
   hull minus eyes, brows, mouth, hairline; highlights and stubble trimmed) in Lab, globally (mean
   and spread) and locally (low-frequency skin colour: the light's direction and the skin tone).
4. `face_region_mask`: the soft region that is replaced: the hull of the original's mesh, grown a
   little so the outline and jaw line (which carry identity) are replaced too, feathered; minus
   the regions the user keeps (`FusionSettings.keep`, `keep_region_mask`).
5. `render_face_mask`: what of the aligned render is its face (its mesh hull minus its fringe);
   elsewhere in the region the original's pixels stay (`FusionSettings.render_only`).
The image-level multi-band blend that pastes the result into the photo is `g2face.align.blend_faces`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import griddata

from g2face.align import estimate_similarity, transform_points
from g2face.models.classic import CLASSIC_FILTERS
from g2face.priors.skin_tone import CHEEK_POLYGONS, cheek_mask, trimmed_lab_mean

NUM_MESH_POINTS = 468  # landmarks beyond these are the irises, which follow gaze

# Mesh landmarks that move little with expression: eye corners, nose bridge and tip, the face's
# sides, forehead; used to lay one face onto another.
STABLE_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 234, 454, 10, 151, 9, 8, 127, 356, 98, 327)

# Skin used for colour statistics: the mesh's hull shrunk by SKIN_INSET face widths (so the outline,
# background, ears and hair stay out) and cut SKIN_TOP below the mesh's top (the hairline), minus
# the eyes, brows and mouth (`KEEP_REGIONS`, grown by SKIN_FEATURE_GROW).
SKIN_INSET = 0.06
SKIN_TOP = 0.12
SKIN_FEATURE_GROW = 0.03
SKIN_FEATURES = ("eyes", "brows", "mouth")
SKIN_TRIM = (0.1, 0.9)
"""Lightness quantiles of the skin pixels kept for statistics: specular highlights above, stubble,
stray hair, glasses frames and deep shadow below."""
SKIN_MIN_SUPPORT = 0.1
"""Where the blurred skin weight is below this, the local colour correction fades out."""
CHEEK_MIN_PIXELS = 30
CHEEK_MIN_SKIN = 0.5
"""A cheek smaller than `CHEEK_MIN_PIXELS` in either face (turned away), or less than this fraction
of it bare skin (`skin_mask` or coloured like it; not hair or a deep shadow), keeps the colour
transfer's tone in the original; in the render it is still moved (`match_cheek_tone`)."""
CHEEK_TONE_SIGMA = 0.06
"""The cheek tone shift is spread over the cheek with a Gaussian of this many face widths (a sharper
edge showed as a patch on the cheek)."""
CHEEK_TONE_MAX = 25.0
"""Largest shift per Lab channel (OpenCV's 8-bit Lab, L in 0..255) of a cheek's tone."""

# MediaPipe's lip rings, in order round the mouth (FaceLandmarksConnections' lips): the outer edge
# of the lips and the edge of the opening between them (teeth, the dark of the mouth).
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIP_MIN_PIXELS = 20
"""Lips smaller than this in either face (a closed mouth seen from the side, a covered mouth)
keep the colour transfer's colour."""
LIP_TONE_FEATHER = 0.01
"""The lip colour shift (`match_lip_tone`) is the same over the whole of the lips and fades to
nothing over this many face widths outside them (at least a pixel: the mesh's lip edge is that
precise). Spread with a Gaussian of 0.03 face widths and scaled to move the lips' mean, it took
redness from the skin round the lips too, 2-2.5 times the lips' own shift at their edge on thin
lips (an opened mouth's): a grey-green ring round the mouth."""
LIP_REDNESS_FLOOR = 4.0
LIP_REDNESS_MARGIN = 4.0
"""A render's lips redder over its skin than the original's are over theirs (read as at least
`LIP_REDNESS_FLOOR`) by more than this (a*, OpenCV's 8-bit Lab) are made less red, down to it;
lips paler by more than this take the original's lip colour over its skin (`LIP_RAISE_MAX`).
Real photos' lips (150 LFW and 150 CelebA originals) sit a* +4 to +6 above the skin for men and
+8.5 for women (medians; 95th percentile +8 to +13 and +16 to +21: lipstick); the renders' at +8
to +24. Matched exactly, a smiling woman's misread lips (no redder than her flushed skin) came out
grey."""
LIP_RAISE_MAX = (20.0, 16.0, 12.0)
"""Largest shift (L*, a*, b*) of a render's lips made as red as an original's lipstick: a lip ring
that strays onto something red in the original (a tongue, a red microphone) must not paint the
fake's lips with it. Raised in a* alone (to the margin below the original's), CelebA's lipstick
wearers' fakes came out pink: lipstick is darker as well as redder."""


# Mesh landmarks of the regions a user may keep (MediaPipe FaceLandmarksConnections, plus the lid
# rings up to the crease and the irises for the eyes); each side is its own polygon.
KEEP_REGIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "eyes": (
        (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,  # contour
         113, 225, 224, 223, 222, 221, 189, 226, 31, 228, 229, 230, 231, 232, 233, 244,  # lids
         468, 469, 470, 471, 472),  # iris
        (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
         342, 445, 444, 443, 442, 441, 413, 446, 261, 448, 449, 450, 451, 452, 453, 464,
         473, 474, 475, 476, 477),
    ),
    "brows": (
        (46, 52, 53, 55, 63, 65, 66, 70, 105, 107),
        (276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    ),
    "nose": (
        (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327,
         344, 440),
    ),
    "mouth": (
        (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
         267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class FusionSettings:
    """Knobs of the geometric fusion, in units of the face's width where they are lengths."""

    warp_strength: float = 0.2
    """0: the rendered face keeps its own proportions; 1: warped fully onto the original's mesh,
    whose layout carries identity. On 150 LFW pairs (same seeds) FaceNet-CASIA's mean cosine
    between the fake and another photo of the person moved −0.017 ± 0.006 at 0.2 and +0.011 ±
    0.004 at 0.8 against 0.5 (SFace TAR@1e-3 0.033 / 0.040 / 0.073, gender and age kept alike);
    the expression follows less closely at lower strengths (blendshape error on 45 LFW faces 0.055
    at 0.5, 0.067 at 0.2, 0.076 at 0, every baseline ≥ 0.095). Session 11: 0.5 → 0.2."""
    mask_grow: float = 0.04
    """The replaced region extends this far beyond the original's mesh hull."""
    mask_feather: float = 0.06
    """Width of the soft edge of the replaced region."""
    forehead_inset: float = 0.06
    """The top of the replaced region stays this far below the mesh's top edge (in face heights):
    the mesh reaches the hairline, where a rendered face has its own hair."""
    forehead_feather: float = 0.10
    """Below the region's top (`forehead_inset`) the replaced region fades in over this many face
    heights, rather than over the `mask_feather` of its other edges: the mesh's top is a nearly
    straight line across the forehead, and there a render lighter or darker than the original's
    forehead showed as a band's edge (d6, a whole-region track). 0: the plain edge."""
    shading_sigma: float = 0.5
    """Scale (face widths) of the original's low-frequency skin colour transferred onto the
    rendered face: the light's direction and the skin tone where they are. At 0.12 it also carried
    the original's finer shading (cheekbones, the nose's and the eye sockets' shadows: face shape):
    with one fixed dummy on 40 LFW faces, FaceNet-CASIA's cosine to the same photo fell 0.014 at
    0.25, 0.017 at 0.5, 0.019 at 1 (paired, ± 0.003). Session 11: 0.12 → 0.5."""
    colour_std_range: tuple[float, float] = (0.7, 1.4)
    """Bounds of the per-channel contrast change of the colour transfer."""
    chroma_std_max: float = 1.0
    """Upper bound of that change for a* and b*: the spread of colour is matched down, never up.
    Amplified, the render's eyes, lips and shadows (already far from its skin's mean colour) came
    out as blue-grey make-up and casts at the face's edges."""
    match_shading_colour: bool = True
    """The fake's skin changes colour with its lightness as the original's does (`transfer_colour`,
    step 2): each of a* and b* set to follow L* over the skin with the original's regression slope
    (where that is negative: `SHADING_COLOUR_SLOPE_MAX`). Matched channel by channel, the render's
    shadows kept its own light's relation (usually grey), while in real photos shadowed skin is
    warmer and more saturated; on pale, brightly lit faces the fake's shading then read as grey or
    greenish patches (wild/photos/group_t1.jpg)."""
    keep: tuple[str, ...] = ()
    """Regions of the original kept (names of `KEEP_REGIONS`): they carry identity."""
    keep_grow: float = 0.03
    """A kept region extends this far beyond its landmarks' hull, fully the original's."""
    keep_feather: float = 0.04
    """Width of the blend from a kept region (outside its grown hull) to the replaced face."""
    render_only: bool = True
    """Paste only what is the rendered face: not the render's background beside its cheeks (where
    its face is narrower than the original's grown mask) nor its own hair on its forehead (a
    fringe), which came out as dark strips and a second hairline (`render_face_mask`); the
    original's pixels fill those places inside the replaced region."""
    follow_pose: bool = True
    """Render the dummy turned and tilted as the original is, with the model file's pose correction
    (`models.gie.PoseCorrection`; a file without one renders as f_mlp alone does)."""
    expression_input: float = 1.0
    """How far GIE's f_mlp is given the original's expression (its MediaPipe blendshapes in the
    geometry vector): 1 as read, 0 GIE's training mean (a neutral face), in between by
    interpolation. The smile correction (`follow_expression`), the lids (`follow_eyelids`) and the
    mouth (`follow_mouth`) follow the original's either way. f_mlp learnt expression and apparent
    gender together from the generator's bank: on LFW pair 102 (a man speaking on the phone,
    looking aside) every one of eight dummies steered male rendered as a woman at his blendshapes
    and 7 of 8 as men with the blendshapes at zero (`runs/s44/geo102.py`). At 0 on CelebA's 150
    evaluation pairs FaceNet's mean cosine to another photo fell 0.020 +- 0.010 and two keys' fakes
    matched less often (0.693 -> 0.640), but the blendshape error rose 0.0537 -> 0.0599 and gender
    kept did not rise (docs/measurements.md, session 44): 1 by default."""
    follow_expression: bool = True
    """Render the dummy smiling as much as the original (the model file's expression correction,
    `models.gie.ExpressionCorrection`; a file without one renders as f_mlp alone does)."""
    follow_eyelids: bool = True
    """Close the fake's eyes as far as the original's are (`follow_eyelids`): the generator draws
    open eyes whatever the geometry it is given, and the partial warp (`warp_strength`) closed a
    blinking original's fake only a fifth of the way. On LFW's 150 evaluation pairs (paired, same
    seeds) MediaPipe's eye blink and squint error of the fakes fell 0.122 -> 0.111 (0.192 -> 0.142
    on the 15 originals blinking > 0.5), all 52 blendshapes' 0.062 -> 0.060; FaceNet's mean
    cosine to another photo of the person +0.000 +- 0.003."""
    follow_mouth: bool = True
    """Part the fake's lips as wide as the original's (`follow_mouth`, `open_mouth`; closing them
    too with `close_mouth`) and show the original's mouth interior between them where they open
    wider (`mouth_interior`): the generator draws mostly closed
    mouths, so a speaking, singing or laughing original's fake had its lips shut. On LFW's 150
    evaluation pairs (paired, same seeds) the fakes' lip gap error fell 0.060 -> 0.031 mouth widths
    (0.151 -> 0.242 where the original's lips part over 0.2, the originals' 0.254), FaceNet's mean
    cosine to another photo of the person -0.004 +- 0.005."""
    close_mouth: bool = True
    """With `follow_mouth`: bring the fake's lips together as far as the original's are where the
    render parts them wider (`follow_mouth`'s `close`): the expression correction makes a render
    smile as much as the original, and the generator smiles with its teeth, so a closed-lipped
    smile or a closed mouth got a grin or a speaking mouth (LFW's 150 evaluation pairs, session 43:
    51 of 300 fakes parted wider by 0.04 mouth widths or more, 30 of them on closed mouths)."""
    keep_sunglasses: bool = True
    """An original's dark glasses stay in front of the fake face (`sunglasses_score`,
    `sunglasses_mask`): glasses must not vanish because of the dummy. It costs some anonymity, as
    the shared lenses and their frame are cues too: on the 39 of 1,493 CelebA photos that wear dark
    glasses, FaceNet-CASIA's cosine between the fake and another photo of the person rose from 0.20
    to 0.33 (paired +0.13 ± 0.03; the originals' own pairs 0.54), none over the FAR-1e-3 threshold
    either way (`scripts/measure_sunglasses.py`)."""
    tint_sunglasses: bool = True
    """An original's tinted or partly dark glasses (`wears_tinted_glasses`), which are not kept in
    front of the fake, tint the fake's eyes as they do the original's (`tint_lenses`): the look of
    the glasses stays and the original's eyes behind them do not. Needs `keep_sunglasses`. The tint
    is laid after the search, which judges the fake untinted. On the 43 of 5,310 CelebA photos it
    applies to (session 34, `scripts/measure_sunglasses.py --files`), the fake still reads as
    tinted glasses in 0.74 of them against 0.14 untinted; FaceNet-CASIA's cosine to another photo of
    the person 0.175 against 0.159 (paired +0.016 ± 0.009), none of 43 at CelebA's FAR-1e-3
    threshold either way. Tinting inside the search (0.79 worn, paired -0.008 ± 0.015) made SFace
    find the shared lens colour alike and pushed some fakes into blotches."""
    match_cheek_tone: bool = True
    """Each cheek's trimmed-mean colour set to the original's (`match_cheek_tone`): where skin tone is
    read (ITA), and where renders and photos are lit differently. After the colour transfer the
    skin as a whole matched the original's (70 CelebA candidates: mean L* within 0.01), but the
    renders' cheeks sit 2.5 L* above their skin's mean and real photos' 1.5 below, so the fakes'
    cheeks came out 4.4 L* lighter, a cheek ITA 8° lighter."""
    match_lip_tone: bool = True
    """Lips about as red over the fake's skin as the original's are over theirs (`match_lip_tone`):
    renders' lips are mostly redder than photos' (a* +8 to +24 over the skin against +4 to +9), and
    a man's fake with bright red lips was read as a woman (CelebA); a woman's red lipstick is kept
    on her fake."""
    match_iris_tone: bool = True
    """Each visible iris of the fake takes the colour of the original's (`match_iris_tone`): renders'
    eyes are mostly light, and pale eyes on a fake of a dark-eyed person read as another ancestry."""
    match_brow_tone: bool = True
    """Each brow of the fake at least as much darker than its skin as the original's
    (`match_brow_tone`): not a fair-haired person's pale brows on a dark-haired one. With
    `match_iris_tone`, session 24 (LFW, 150 pairs, same seeds): FaceNet TAR unchanged at 0.007
    (mean cosine +0.007 ± 0.007), two keys 0.627 → 0.653, wrn gender one face fewer
    (scripts/measure_eye_tone.py for what they change)."""
    match_chroma_range: bool = True
    """No colour on the fake's face that the original's face never shows (`match_chroma_range`):
    renders of women often wear eyeshadow, and a render's shadows can turn teal or green under the
    colour transfer, which moves the skin's statistics only; on a photo of bare skin that read as
    bruises or paint (the astronaut fixture's fake around the eyes)."""
    match_sharpness: bool = False
    """A render sharper than the original face (a defocused, dark or moving face in a crowd) is
    blurred to the original's fine detail (`match_sharpness`), so a crisp face is not laid into a
    soft photo. Measured as the photo will show both (`source_width`); sharp photos are left as
    they are (`SHARPNESS_TOLERANCE`). Off by default: it costs anonymity where it acts. A blurred
    fake keeps little but the low-frequency layout, and the layout is the original's (the fusion
    lays the render on the original's landmarks): hamilton's dark, defocused audience faces leaked
    to FaceNet on 44.9 % of face-frames with it against 12.5 % without (docs/video.md, session 18)."""
    max_yaw: float = 40.0
    """Faces turned further than this (|yaw| in degrees, the geometry prior's) get the classic
    `turned_filter` instead of a fake: the generator renders heads turned up to about 30° (its
    bank's 5-95 % range, `models.gie.PoseCorrection`), and laid onto a face turned 44° or more the
    render came out as a second, frontal face inside the head, a woman's face on a bearded profile
    (8 of 150 CelebA faces, 44-89°; at 36° it still fitted; LFW's 150 reach 35°). 90 or more turns
    it off."""
    turned_filter: str = "blur"
    """The classic filter (`models.classic.CLASSIC_FILTERS`) of faces turned beyond `max_yaw`."""
    match_seam: bool = True
    """Take out the colour step across the fake's visible edge where the original's own skin shows
    beside it (`match_seam`): the colour transfer matches the skin as a whole and its low
    frequencies, not the edge, and on brightly lit or airbrushed photos a pale or dark band ran
    down the face's side."""
    limit_highlights: bool = True
    """The fake's skin no lighter than the original's lightest (`limit_highlights`): its lightness
    above the original's bare skin's 90th percentile eased to at most its 99.5th. The colour
    transfer adds the original's light to the render's own shading, and on a brightly lit photo
    the render's highlights then came out above anything the photo's skin shows, clipped in RGB to
    white patches over the nose, under the eyes and on the cheeks (wild/photos/group_t1.jpg)."""
    lightness_as_ratios: bool = True
    """The colour transfer's global step moves lightness as light does, by ratios (`transfer_colour`,
    in log(L* + 16)), not by differences: a render's shadow half as bright as its skin stays about
    half as bright as the fake's skin. Matched by differences (mean and spread of L*), a light
    render laid onto a dark photo had its eye sockets and shadows pushed to near black: hard dark
    blocks over the eyes of LFW fakes in dim light (Koizumi, Aznar, Keanu Reeves)."""
    fill_texture: float = 1.0
    """When the whole region is replaced (`render_only` False), how much of the original's fine
    skin texture (pores, wrinkles; clipped to the skin's own range, none on its hair or background)
    is laid over the render's face colour where the render is not face (`textured_fill`). 0 leaves
    a flat blur of colour, which read as a smooth, younger patch."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.keep) - set(KEEP_REGIONS))
        if unknown:
            raise ValueError(
                f"unknown face region(s) to keep: {', '.join(unknown)}; known: {', '.join(KEEP_REGIONS)}"
            )
        if not 0 <= self.warp_strength <= 1:
            raise ValueError(f"warp_strength must be in [0, 1], got {self.warp_strength}")
        if self.chroma_std_max <= 0:
            raise ValueError(f"chroma_std_max must be > 0, got {self.chroma_std_max}")
        if not 0 <= self.fill_texture <= 2:
            raise ValueError(f"fill_texture must be in [0, 2], got {self.fill_texture}")
        if self.turned_filter not in CLASSIC_FILTERS:
            raise ValueError(
                f"turned_filter must be one of {', '.join(CLASSIC_FILTERS)}, got {self.turned_filter!r}"
            )
        if self.max_yaw <= 0:
            raise ValueError(f"max_yaw must be > 0 degrees, got {self.max_yaw}")
        if self.forehead_feather < 0:
            raise ValueError(f"forehead_feather must be >= 0, got {self.forehead_feather}")
        if not 0 <= self.expression_input <= 1:
            raise ValueError(f"expression_input must be in [0, 1], got {self.expression_input}")
        if self.mask_feather <= 0 or self.mask_grow < -0.1:
            raise ValueError("mask_feather must be > 0 and mask_grow >= -0.1")


def face_width(points: np.ndarray) -> float:
    """Width of a face from its mesh landmarks [N, 2] (crop pixels): the span of the mesh in x."""
    mesh = points[:NUM_MESH_POINTS]
    return float(mesh[:, 0].max() - mesh[:, 0].min())


def fit_render_to_original(render_points: np.ndarray, original_points: np.ndarray) -> np.ndarray:
    """2×3 similarity taking rendered-crop pixels onto original-crop pixels (stable mesh points)."""
    idx = list(STABLE_POINTS)
    return estimate_similarity(render_points[idx, :2], original_points[idx, :2])


def mesh_warp(image: np.ndarray, points: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    """Warp `image` so its mesh landmarks `points` [N, 2] move `strength` of the way to `target`.

    The displacement is interpolated linearly inside the mesh and falls to zero on a ring one face
    width around it, so the warp stays local and smooth.
    """
    if strength <= 0:
        return image
    mesh_src = points[:NUM_MESH_POINTS, :2]
    return warp_mesh_to(image, points, mesh_src + strength * (target[:NUM_MESH_POINTS, :2] - mesh_src))


def warp_mesh_to(image: np.ndarray, points: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """Warp `image` so its mesh landmarks `points` [N, 2] land on `destination` [>= 468, 2], as
    `mesh_warp` does."""
    size = image.shape[0]
    mesh_src = points[:NUM_MESH_POINTS, :2]
    mesh_dst = destination[:NUM_MESH_POINTS, :2]
    if np.array_equal(mesh_src, mesh_dst):
        return image
    centre = mesh_dst.mean(0)
    ring_radius = face_width(mesh_dst) * 1.1
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = centre + ring_radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    corners = np.array([[-size, -size], [2 * size, -size], [-size, 2 * size], [2 * size, 2 * size]], float)
    anchors = np.concatenate([mesh_dst, ring, corners])
    # Backward map: an output pixel at a destination point reads the source point it came from.
    shifts = np.concatenate([mesh_src - mesh_dst, np.zeros((len(ring) + len(corners), 2))])
    coarse = 64
    grid = (np.arange(coarse) + 0.5) * size / coarse - 0.5
    gx, gy = np.meshgrid(grid, grid)
    field = griddata(anchors, shifts, (gx, gy), method="linear", fill_value=0.0).astype(np.float32)
    dense = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    return cv2.remap(
        image, xs + dense[..., 0], ys + dense[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


# MediaPipe's eye contours as (upper lid, lower lid) point pairs across each eye's opening, and
# each eye's corners.
EYELID_PAIRS = (
    ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155)),
    ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382)),
)
EYE_CORNERS = ((33, 133), (263, 362))
EYELID_UPPER_SHARE = 0.8
"""Of the gap an eye's lids close by (`follow_eyelids`), the share the upper lid moves down, the
lower lid moving up by the rest: in a blink or a squint the upper lid does most of the moving."""


def eye_openness(points: np.ndarray) -> list[float]:
    """Per eye, its lids' mean gap (across the corners' line) over the distance between its corners,
    of a mesh [>= 468, 2] in pixels: about 0.21 for an open eye of MediaPipe's mean face, near 0 for a
    closed one."""
    openness = []
    for pairs, (outer, inner) in zip(EYELID_PAIRS, EYE_CORNERS, strict=True):
        axis = points[inner, :2] - points[outer, :2]
        width = float(np.linalg.norm(axis))
        if width < 1e-6:
            openness.append(0.0)
            continue
        normal = np.array([-axis[1], axis[0]]) / width
        gaps = [float(np.dot(points[lower, :2] - points[upper, :2], normal)) for upper, lower in pairs]
        openness.append(abs(float(np.mean(gaps))) / width)
    return openness


def follow_eyelids(render_points: np.ndarray, original_points: np.ndarray) -> np.ndarray:
    """The render's mesh [N, 2] (pixels, where the fusion lays it) with each eye's lids brought
    together until the eye opens no wider, for its width, than the original's (`eye_openness`):
    an original's closed or narrowed eye (a blink, a squint, a laugh) is followed by the fake's. A
    wider-open original's is not: behind a render's lids there is no eye to show. Only the lid
    contours move, so the fake keeps its own eye shape, corners and lids' skin (stretched over the
    eye, as a closing lid is)."""
    out = render_points.copy()
    for pairs, wanted, own in zip(
        EYELID_PAIRS, eye_openness(original_points), eye_openness(render_points), strict=True
    ):
        if own <= 0 or wanted >= own:
            continue
        closing = 1 - wanted / own  # the fraction of each lid gap that closes
        for upper, lower in pairs:
            gap = render_points[lower, :2] - render_points[upper, :2]
            out[upper, :2] = render_points[upper, :2] + EYELID_UPPER_SHARE * closing * gap
            out[lower, :2] = render_points[lower, :2] - (1 - EYELID_UPPER_SHARE) * closing * gap
    return out


EYELID_STRETCH_ABOVE = 0.5
EYELID_STRETCH_BELOW = 0.35
"""How far above the upper lid and below the lower lid (in eye widths) `close_eyelids` stretches the
skin a moving lid drags: from the lid to about the brow, and a little down the cheek."""


def _lid_contours(eye: int) -> tuple[list[int], list[int]]:
    """An eye's upper and lower lid contours as mesh indices from its outer to its inner corner."""
    outer, inner = EYE_CORNERS[eye]
    pairs = EYELID_PAIRS[eye]
    return [outer, *(u for u, _ in pairs), inner], [outer, *(lo for _, lo in pairs), inner]


EyeFrame = tuple[np.ndarray, np.ndarray, np.ndarray]
"""An eye's (origin, along, across) in a crop's pixels (`_eye_frame`)."""


def _eye_frame(points: np.ndarray, eye: int) -> tuple[EyeFrame, float] | None:
    """An eye's frame in a mesh [>= 468, 2] (pixels): (origin at its outer corner, unit vector
    `along` to its inner corner, unit vector `across` from its upper lid towards its lower), and
    its width between the corners; None for an eye under a pixel wide."""
    return _contour_frame(points, EYE_CORNERS[eye], *_lid_contours(eye))


def _contour_frame(
    points: np.ndarray, corners: tuple[int, int], upper: list[int], lower: list[int]
) -> tuple[EyeFrame, float] | None:
    """The frame of an opening between two contours that meet at `corners` (an eye's lids, the
    lips): origin at the first corner, `along` to the second, `across` from the upper contour
    towards the lower, and the corners' distance; None under a pixel."""
    first, second = corners
    origin = points[first, :2]
    axis = points[second, :2] - origin
    width = float(np.linalg.norm(axis))
    if width < 1.0:
        return None
    along = axis / width
    across = np.array([-along[1], along[0]])
    if np.dot(points[lower, :2].mean(0) - points[upper, :2].mean(0), across) < 0:
        across = -across
    return (origin, along, across), width


def _in_frame(p: np.ndarray, frame: EyeFrame) -> tuple[np.ndarray, np.ndarray]:
    """Points [..., 2] as (u along an eye's corners' line, v across it) in an eye's frame
    (`_eye_frame`)."""
    origin, along, across = frame
    d = p - origin
    return d @ along, d @ across


def _lid_in_frame(p: np.ndarray, frame: EyeFrame) -> tuple[np.ndarray, np.ndarray]:
    """A lid contour [K, 2] as (u, v) in an eye's frame, sorted by u for `np.interp`."""
    u, v = _in_frame(p, frame)
    order = np.argsort(u)
    return u[order], v[order]


def _stretch(v: np.ndarray, start: np.ndarray, end: np.ndarray, read_start, read_end) -> np.ndarray:
    """Positions `v` in [start, end] mapped linearly onto [read_start, read_end] (an interval
    shrunk to nothing maps onto its start)."""
    return read_start + (v - start) * (read_end - read_start) / np.maximum(end - start, 1e-6)


def close_eyelids(image: np.ndarray, points: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """Move an image's eyelids from where its mesh `points` [>= 468, 2] has them to where
    `destination` has them (`follow_eyelids`), as lids move: across each eye, column by column, the
    skin between a fixed line above and the upper lid stretches or shrinks to follow the lid, the
    opening between the lids shrinks (to nothing when they meet: the eye is shut, lash line on lash
    line) and the skin below follows the lower lid. `warp_mesh_to` cannot do this: it interpolates
    over a triangulation of the moved points, whose triangles reaching from above a shut lid to the
    lower one kept reading the eye (80 % of a synthetic eye's dark opening stayed)."""
    maps = None  # the backward map (x, y), made once an eye's lids move
    for eye in range(len(EYE_CORNERS)):
        maps = _move_contours(
            image.shape[0], points, destination, EYE_CORNERS[eye], *_lid_contours(eye),
            EYELID_STRETCH_ABOVE, EYELID_STRETCH_BELOW, maps,
        )  # fmt: skip
    if maps is None:
        return image
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


ContourLines = tuple[float, float, tuple, tuple, tuple, tuple]
"""(top, bottom, source upper, destination upper, source lower, destination lower) of
`_contour_lines`: each contour as (u, v) in the opening's frame, sorted by u."""


def _contour_lines(
    points: np.ndarray,
    destination: np.ndarray,
    frame: EyeFrame,
    width: float,
    upper: list[int],
    lower: list[int],
    above: float,
    below: float,
) -> ContourLines:
    """An opening's contours in its frame before and after they move, and the fixed lines `above`
    and `below` widths beyond them between which the skin stretches."""
    src_up, src_low = (_lid_in_frame(points[c, :2], frame) for c in (upper, lower))
    dst_up, dst_low = (_lid_in_frame(destination[c, :2], frame) for c in (upper, lower))
    top = min(src_up[1].min(), dst_up[1].min()) - above * width
    bottom = max(src_low[1].max(), dst_low[1].max()) + below * width
    return top, bottom, src_up, dst_up, src_low, dst_low


def _move_contours(
    size: int,
    points: np.ndarray,
    destination: np.ndarray,
    corners: tuple[int, int],
    upper: list[int],
    lower: list[int],
    above: float,
    below: float,
    maps: list[np.ndarray] | None,
) -> list[np.ndarray] | None:
    """Add to the backward `maps` (x, y; made when None and something moves) the column-by-column
    move of an opening's contours (`close_eyelids`, `open_mouth`) from `points` to `destination`."""
    contours = upper + lower
    if np.allclose(points[contours, :2], destination[contours, :2]):
        return maps
    found = _contour_frame(points, corners, upper, lower)
    if found is None:
        return maps
    frame, width = found
    origin, along, across = frame
    top, bottom, src_up, dst_up, src_low, dst_low = _contour_lines(
        points, destination, frame, width, upper, lower, above, below
    )
    # the pixels the contours' columns span, with a margin for the corners
    box_corners = np.array([[u, v] for u in (-0.1 * width, 1.1 * width) for v in (top, bottom)])
    box = origin + box_corners[:, :1] * along + box_corners[:, 1:] * across
    x0, y0 = np.clip(np.floor(box.min(0)).astype(int), 0, size)
    x1, y1 = np.clip(np.ceil(box.max(0)).astype(int) + 1, 0, size)
    if x1 <= x0 or y1 <= y0:
        return maps
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u, v = _in_frame(np.stack([xs, ys], -1), frame)
    # Each column's contours, read off them (beyond the corners, where the contours meet at the
    # corner, both lie there and the map is the identity).
    s_up, d_up = np.interp(u, *src_up), np.interp(u, *dst_up)
    s_low, d_low = np.interp(u, *src_low), np.interp(u, *dst_low)
    # Backward map along each column: an output pixel at v reads the source at `read`, piecewise
    # linear through (top, upper contour, lower contour, bottom).
    read = v.copy()
    above_upper = (v >= top) & (v <= d_up)
    read[above_upper] = _stretch(v[above_upper], top, d_up[above_upper], top, s_up[above_upper])
    between = (v > d_up) & (v <= d_low)
    read[between] = _stretch(v[between], d_up[between], d_low[between], s_up[between], s_low[between])
    below_lower = (v > d_low) & (v <= bottom)
    read[below_lower] = _stretch(v[below_lower], d_low[below_lower], bottom, s_low[below_lower], bottom)
    shift = read - v
    if maps is None:
        maps = list(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)))
    maps[0][y0:y1, x0:x1] += (shift * across[0]).astype(np.float32)
    maps[1][y0:y1, x0:x1] += (shift * across[1]).astype(np.float32)
    return maps


MOUTH_CORNERS = (78, 308)
"""The inner corners of the lips (MediaPipe mesh), where the inner contours meet."""
MOUTH_INNER_PAIRS = (
    (191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324),
)  # fmt: skip
"""The inner lip contours as (upper, lower) mesh points facing each other, corner to corner."""
MOUTH_UPPER_SHARE = 0.3
"""Of the gap a fake's mouth opens by (`follow_mouth`), the share the upper lip moves up, the lower
lip and chin moving down by the rest: a mouth opens mostly by the jaw dropping."""
MOUTH_OPEN_MIN = 0.04
"""`follow_mouth` opens a fake's mouth only where the original's lips part wider than the render's
by at least this many mouth widths (mean over the inner contour): on LFW's 150 evaluation originals
a quarter of the mouths, the closed ones, read 0.00-0.02 apart, so smaller differences are mostly
the mesh's noise. Opened where the original's lips part (a grin showing teeth too, where the
render's smile keeps its lips closer)."""
MOUTH_STRETCH_ABOVE = 0.4
MOUTH_STRETCH_BELOW = 0.8
"""How far above the upper lip and below the lower lip (in mouth widths, from the inner contours)
`open_mouth` stretches the skin the lips drag: about to the nose's base, and down the chin."""
MOUTH_INTERIOR_FEATHER = 1.5
"""Pixels over which the original's mouth interior (`mouth_interior`) fades into the fake's lips."""


def _mouth_contours() -> tuple[list[int], list[int]]:
    """The inner lip contours (upper, lower) as mesh indices from one corner to the other."""
    first, second = MOUTH_CORNERS
    return (
        [first, *(u for u, _ in MOUTH_INNER_PAIRS), second],
        [first, *(lo for _, lo in MOUTH_INNER_PAIRS), second],
    )


def mouth_openness(points: np.ndarray) -> np.ndarray:
    """The gap between the inner lips at each of `MOUTH_INNER_PAIRS` (across the corners' line)
    over the distance between the inner corners, of a mesh [>= 468, 2] in pixels: near 0 for a
    closed mouth, 0.15-0.5 for one open to speak or laugh (LFW originals MediaPipe reads with
    jawOpen over 0.2: 0.26 on average)."""
    upper, lower = _mouth_contours()
    found = _contour_frame(points, MOUTH_CORNERS, upper, lower)
    if found is None:
        return np.zeros(len(MOUTH_INNER_PAIRS))
    (_, _, across), width = found
    return np.array([np.dot(points[lo, :2] - points[up, :2], across) for up, lo in MOUTH_INNER_PAIRS]) / width


def follow_mouth(render_points: np.ndarray, original_points: np.ndarray, close: bool = True) -> np.ndarray:
    """The render's mesh [N, 2] (pixels, where the fusion lays it) with its lips parted as wide,
    for the mouth's width, as the original's (`mouth_openness`), the upper lip taking
    `MOUTH_UPPER_SHARE` of the move and the lower lip and chin the rest; every mesh point between
    the stretch lines moves as `open_mouth` moves the image, so masks drawn from it fit. Where the
    original's mouth is open wider by `MOUTH_OPEN_MIN` (mean over the pairs) the render's lips part
    (the generator draws mostly closed mouths, and a speaking or laughing original's fake had its
    lips shut: LFW, jawOpen 0.32 on 21 originals, 0.08 on their fakes); with `close`, where it is
    open narrower by as much, they come together (`FusionSettings.close_mouth`). Else the render's
    own points (the same array)."""
    own, wanted = mouth_openness(render_points), mouth_openness(original_points)
    change = float(np.mean(wanted - own))
    if change >= MOUTH_OPEN_MIN:
        moves = np.clip(wanted - own, 0, None)  # (only pairs the original parts wider)
    elif close and change <= -MOUTH_OPEN_MIN:
        moves = np.clip(wanted - own, None, 0)
    else:
        return render_points
    upper, lower = _mouth_contours()
    found = _contour_frame(render_points, MOUTH_CORNERS, upper, lower)
    if found is None:
        return render_points
    frame, width = found
    across = frame[2]
    opening = moves * width  # pixels each pair parts further (closes, where negative)
    target = render_points.copy()
    for (up, lo), gap in zip(MOUTH_INNER_PAIRS, opening, strict=True):
        target[up, :2] = render_points[up, :2] - MOUTH_UPPER_SHARE * gap * across
        target[lo, :2] = render_points[lo, :2] + (1 - MOUTH_UPPER_SHARE) * gap * across
    # every other point moves as the image will (the forward map of `_move_contours`' stretch)
    top, bottom, src_up, dst_up, src_low, dst_low = _contour_lines(
        render_points, target, frame, width, upper, lower, MOUTH_STRETCH_ABOVE, MOUTH_STRETCH_BELOW
    )
    mesh = render_points[:NUM_MESH_POINTS, :2]
    u, v = _in_frame(mesh, frame)
    s_up, d_up = np.interp(u, *src_up), np.interp(u, *dst_up)
    s_low, d_low = np.interp(u, *src_low), np.interp(u, *dst_low)
    # each segment of a column (above the upper lip, between the lips, below the lower lip) onto
    # where `_move_contours` puts it
    between = _stretch(v, s_up, s_low, d_up, d_low)
    below_upper_lip = np.where(v >= s_low, _stretch(v, s_low, bottom, d_low, bottom), between)
    moved = np.where(v <= s_up, _stretch(v, top, s_up, top, d_up), below_upper_lip)
    inside = (u >= 0) & (u <= width) & (v >= top) & (v <= bottom)
    out = render_points.copy()
    out[:NUM_MESH_POINTS, :2] += np.where(inside, moved - v, 0.0)[:, None] * across
    contours = upper + lower
    out[contours, :2] = target[contours, :2]
    return out


def open_mouth(image: np.ndarray, points: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """Move an image's lips from where its mesh `points` [>= 468, 2] has them to where
    `destination` has them (`follow_mouth`), as `close_eyelids` moves lids: column by column across
    the mouth the skin above stretches to follow the upper lip, the lips keep their thickness, the
    opening between them grows (what the render drew there, stretched: `mouth_interior` then
    shows the original's) or shrinks (its teeth squeezed out of sight where the lips meet) and the
    chin follows the lower lip."""
    upper, lower = _mouth_contours()
    maps = _move_contours(
        image.shape[0], points, destination, MOUTH_CORNERS, upper, lower,
        MOUTH_STRETCH_ABOVE, MOUTH_STRETCH_BELOW, None,
    )  # fmt: skip
    if maps is None:
        return image
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def mouth_interior(
    original: np.ndarray, original_points: np.ndarray, opened_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """What shows inside a fake mouth `follow_mouth` opened: the original's mouth interior (teeth,
    tongue, the dark of the throat), moved by the affine fit of its inner lip contour onto the
    fake's, as (float32 image [S, S, 3], soft mask [S, S] of the fake's opening); None where the
    fit fails. The render has no interior to show (its lips were shut), and teeth and shadow carry
    little identity for a recogniser."""
    upper, lower = _mouth_contours()
    ring = upper + lower[-2:0:-1]
    source = original_points[ring, :2].astype(np.float32)
    target = opened_points[ring, :2].astype(np.float32)
    matrix, _ = cv2.estimateAffine2D(source, target)
    if matrix is None:
        return None
    size = original.shape[0]
    moved = cv2.warpAffine(
        original, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    ).astype(np.float32)
    hard = np.zeros((size, size), np.uint8)
    cv2.fillPoly(hard, [np.round(target * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    mask = cv2.GaussianBlur(hard.astype(np.float32) / 255, (0, 0), MOUTH_INTERIOR_FEATHER)
    return moved, mask


def _polygon_mask(points: np.ndarray, size: int) -> np.ndarray:
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255


def _features_mask(points: np.ndarray, size: int, names: tuple[str, ...]) -> np.ndarray:
    """Hard uint8 mask [size, size] of the named `KEEP_REGIONS` (eyes, brows, mouth) of a mesh; a
    mesh without irises simply lacks those points."""
    mask = np.zeros((size, size), np.uint8)
    for name in names:
        for polygon in KEEP_REGIONS[name]:
            present = [i for i in polygon if i < len(points)]
            mask |= (_polygon_mask(points[present, :2], size) > 0.5).astype(np.uint8)
    return mask


def face_region_mask(points: np.ndarray, size: int, settings: FusionSettings) -> np.ndarray:
    """Soft mask [size, size] in [0, 1] of the region replaced: the original's mesh hull grown by
    `mask_grow` face widths (sides and jaw: the outline carries identity), its top kept below the
    hairline, with a smooth edge `mask_feather` wide that stays inside."""
    mesh = points[:NUM_MESH_POINTS, :2]
    width = face_width(mesh)
    centre = mesh.mean(0)
    grown = centre + (mesh - centre) * (1 + 2 * settings.mask_grow)
    top, height = mesh[:, 1].min(), mesh[:, 1].max() - mesh[:, 1].min()
    grown[:, 1] = np.maximum(grown[:, 1], top + settings.forehead_inset * height)
    hard = _polygon_mask(grown, size)
    feather = max(1.0, settings.mask_feather * width)
    # Distance inside the hull, eased to 1 over the feather width: 0 on and outside the hull.
    inside = cv2.distanceTransform((hard > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    t = np.clip(inside / feather, 0, 1)
    replaced = t * t * (3 - 2 * t)
    if settings.forehead_feather > 0:
        rows = np.arange(size, dtype=np.float64)[:, None]
        cut = top + settings.forehead_inset * height
        u = np.clip((rows - cut) / (settings.forehead_feather * height), 0, 1)
        replaced = replaced * (u * u * (3 - 2 * u))
    if settings.keep:
        replaced = replaced * (1 - keep_region_mask(points, size, settings))
    return replaced.astype(np.float32)


def keep_region_mask(points: np.ndarray, size: int, settings: FusionSettings) -> np.ndarray:
    """Soft mask [size, size] in [0, 1] of the regions kept from the original (`settings.keep`):
    1 on each region's landmark hull grown by `keep_grow` face widths, easing to 0 over
    `keep_feather` outside it, so the kept part blends into the rendered face."""
    width = face_width(points)
    hard = np.zeros((size, size), np.float32)
    for name in settings.keep:
        for polygon in KEEP_REGIONS[name]:
            present = [i for i in polygon if i < len(points)]  # a mesh without irises lacks 468+
            hard = np.maximum(hard, _polygon_mask(points[present, :2], size))
    if not hard.any():
        return hard
    # Distance from the hull, shifted by the growth and eased to 0 over the feather width.
    outside = cv2.distanceTransform((hard < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    feather = max(1.0, settings.keep_feather * width)
    t = np.clip((outside - settings.keep_grow * width) / feather, 0, 1)
    return (1 - t * t * (3 - 2 * t)).astype(np.float32)


HAIR_DISTANCE = 2.5
"""A forehead pixel of a render further than this many of its skin's standard deviations (Lab,
lightness and colour together) from its skin's mean is its hair, not skin."""
SIDE_BAND = 0.15
"""Beside the eyes and nose (from the brows down to the mouth corners), a render's pixels within this
many face widths of its mesh hull's edge and as far from its skin as `HAIR_DISTANCE` are hair or
background hanging into the hull (a lock beside the cheek, the far side of a turned head), not face.
Below the mouth they are left alone: a beard at the jaw belongs to the face."""
HAIR_REACH = 0.08
"""Face widths that hair found on a render's forehead or at its sides is followed, through pixels
unlike its skin, into the rings around its brows and eyes that are otherwise never taken for hair
(a brow or a lash line is as dark as a fringe). A lock falling past a brow's outer end or beside an
eye corner stayed face, and the fake carried it as a dark patch over the eye (LFW, Serena
Williams' key-A fake). The brows and the openings of the eyes and mouth are never entered."""


def _follow_within(seed: np.ndarray, allowed: np.ndarray, reach: float) -> np.ndarray:
    """uint8 mask `seed` grown through the `allowed` pixels (uint8) by at most `reach` pixels
    (geodesic dilation, one pixel a step): what of `allowed` is connected to the seed nearby."""
    step = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    grown = seed.copy()
    for _ in range(max(0, int(round(reach)))):
        wider = cv2.dilate(grown, step) & (allowed | seed)
        if np.array_equal(wider, grown):
            break
        grown = wider
    return grown


def render_face_mask(
    render: np.ndarray, points: np.ndarray, skin: np.ndarray, settings: FusionSettings
) -> np.ndarray:
    """Soft mask [S, S] in [0, 1] of what is face in a rendered crop (uint8 RGB) with its mesh
    `points` (crop pixels) and bare-skin mask `skin`: its mesh hull, eased to 0 over the fusion's
    feather width inside the hull's edge, minus its hair: pixels whose colour is far from its
    skin's on the forehead (above the brows) and at the hull's sides between the brows and the mouth
    (`SIDE_BAND`)."""
    size = render.shape[0]
    mesh = points[:NUM_MESH_POINTS, :2]
    width = face_width(mesh)
    hull = (_polygon_mask(mesh, size) > 0.5).astype(np.uint8)
    feather = max(1.0, settings.mask_feather * width)
    inside = cv2.distanceTransform(hull, cv2.DIST_L2, 5)
    t = np.clip(inside / feather, 0, 1)
    face = t * t * (3 - 2 * t)
    if skin.sum() < 16:
        return face.astype(np.float32)
    # Lighter than the skin only by lightness is a highlight (a bald head's or a shiny forehead's),
    # not hair: blond or grey hair differs in colour too (`skin_coloured`).
    unlike_skin = ~skin_coloured(render, skin)
    # The forehead: above the line through the two brows' lower edges (a tilted head's brows are
    # not level: a horizontal cut at the lower one took the higher side's eye for a fringe), the
    # brows themselves (grown) left out.
    (x_left, y_left), (x_right, y_right) = (
        (points[list(polygon), 0].mean(), points[list(polygon), 1].max()) for polygon in KEEP_REGIONS["brows"]
    )
    slope = (y_right - y_left) / (x_right - x_left) if abs(x_right - x_left) > 1 else 0.0
    columns = np.arange(size, dtype=np.float64)
    brow_line = y_left + slope * (columns - x_left)  # per column
    rows = np.arange(size, dtype=np.float64)[:, None]
    forehead = (rows < brow_line[None, :]).astype(np.uint8)
    grow = max(1, int(round(0.02 * width)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    forehead &= 1 - cv2.dilate(_features_mask(points, size, ("brows",)), kernel, iterations=2)
    # The sides: near the hull's edge, from the brows down to the mouth corners.
    mouth = max(points[61, 1], points[291, 1])
    side = ((rows >= brow_line[None, :]) & (rows < mouth)).astype(np.uint8)
    side &= (inside < SIDE_BAND * width).astype(np.uint8)
    # The eyes and the lips are never hair (a turned face's far eye and mouth corner can lie near
    # the edge, a tilted one's eye above the other brow, its upper lip above the corners' line).
    features = _features_mask(points, size, ("eyes", "mouth"))
    near_features = cv2.dilate(features, kernel, iterations=2)
    hair = (unlike_skin & ((forehead | side) > 0) & (hull > 0) & (near_features == 0)).astype(np.uint8)
    # Opened (a stray dark pixel or a wrinkle is not a fringe), followed into the features' rings,
    # then grown and softened.
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    hair = cv2.morphologyEx(hair, cv2.MORPH_OPEN, small)
    # (the eyes' openings, not their lids: a lock over an eye's outer corner lies on the lids)
    openings = eyes_and_mouth_mask(points, size)
    own_features = _features_mask(points, size, ("brows",)) | openings
    followed = (unlike_skin & (hull > 0) & (own_features == 0)).astype(np.uint8)
    hair = _follow_within(hair, followed, HAIR_REACH * width)
    hair = cv2.dilate(hair, kernel, iterations=2)
    hair = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), max(1.0, 0.02 * width))
    hair *= 1 - openings  # grown back over an eye or the lips: still not hair
    return (face * (1 - np.clip(hair, 0, 1))).astype(np.float32)


def skin_mask(points: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Boolean mask of the bare skin of the face in `image` (uint8 RGB crop) with mesh `points`
    [N, 2] in its pixels: the shrunk mesh hull below the hairline minus eyes, brows and mouth, and
    of those pixels only the ones inside the `SKIN_TRIM` quantiles of lightness."""
    size = image.shape[0]
    mesh = points[:NUM_MESH_POINTS, :2]
    width = face_width(mesh)
    centre = mesh.mean(0)
    shrunk = centre + (mesh - centre) * (1 - 2 * SKIN_INSET)
    top, height = mesh[:, 1].min(), mesh[:, 1].max() - mesh[:, 1].min()
    shrunk[:, 1] = np.maximum(shrunk[:, 1], top + SKIN_TOP * height)
    area = _polygon_mask(shrunk, size) > 0.5
    features = _features_mask(points, size, SKIN_FEATURES)
    grow = max(1, int(round(SKIN_FEATURE_GROW * width)))
    features = cv2.dilate(
        features, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    )
    skin = area & (features == 0)
    if skin.sum() < 16:
        return skin
    lightness = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0]
    low, high = np.quantile(lightness[skin], SKIN_TRIM)
    return skin & (lightness >= low) & (lightness <= high)


LOW_PASS_STEP = 4.0
"""A Gaussian blur of scale sigma is computed at 1/k of the resolution, k = sigma / this (whole):
what is left at that scale is smooth over many pixels, and a 0.5-face-width blur at full size
cost more than the rest of the fusion."""


def _low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (float32 [H, W] or [H, W, C]) at scale `sigma` pixels, large scales at a
    reduced resolution (`LOW_PASS_STEP`) and resized back."""
    factor = int(sigma // LOW_PASS_STEP)
    if factor < 2:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, round(width / factor)), max(1, round(height / factor))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _masked_blur(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `image` [H, W, C] that only averages where `weight` [H, W] > 0 (normalised
    convolution)."""
    num = _low_pass(image * weight[..., None], sigma)
    den = _low_pass(weight, sigma)
    return num / np.maximum(den, 1e-3)[..., None]


def transfer_colour(
    render: np.ndarray,
    original: np.ndarray,
    render_skin: np.ndarray,
    original_skin: np.ndarray,
    region: np.ndarray,
    width: float,
    settings: FusionSettings,
) -> np.ndarray:
    """The rendered crop (uint8 RGB) recoloured to the original's skin, in CIE Lab:

    1. globally, each channel's mean and spread over the render's skin set to the original's skin
       (the colour channels' spread only reduced: `chroma_std_max`; lightness by its ratios with
       `lightness_as_ratios`, `_match_lightness_ratios`);
    2. with `match_shading_colour`, a* and b* made to vary with L* over the skin as the original's
       do (`SHADING_COLOUR_SLOPE_MAX`, within `SHADING_COLOUR_RANGE` skin deviations of lightness);
    3. locally, inside `region`, each channel's low-frequency skin colour (scale `shading_sigma`
       face widths, averaged over skin pixels only) replaced by the original's: the light's
       direction and the original's own skin tone where it is, without the darkness of the
       original's eyes, brows, mouth or hair leaking in as shading."""
    if render_skin.sum() < 16 or original_skin.sum() < 16:
        return render
    lab_r = cv2.cvtColor(render, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    lo, hi = settings.colour_std_range
    out = lab_r.copy()
    for c in range(3):
        if c == 0 and settings.lightness_as_ratios:
            out[..., 0] = _match_lightness_ratios(
                lab_r[..., 0], lab_o[..., 0], render_skin, original_skin, lo, hi
            )
            continue
        mr, sr = lab_r[..., c][render_skin].mean(), lab_r[..., c][render_skin].std() + 1e-3
        mo, so = lab_o[..., c][original_skin].mean(), lab_o[..., c][original_skin].std() + 1e-3
        top = hi if c == 0 else min(hi, settings.chroma_std_max)
        out[..., c] = (lab_r[..., c] - mr) * np.clip(so / sr, min(lo, top), top) + mo
    if settings.match_shading_colour:
        out = _match_shading_colour(out, lab_o, render_skin, original_skin)
    sigma = max(1.0, settings.shading_sigma * width)
    weight_o, weight_r = original_skin.astype(np.float32), render_skin.astype(np.float32)
    support_o = _low_pass(weight_o, sigma)
    support_r = _low_pass(weight_r, sigma)
    confidence = np.clip(np.minimum(support_o, support_r) / SKIN_MIN_SUPPORT, 0, 1) * region
    local_o = _masked_blur(lab_o, weight_o, sigma)
    local_r = _masked_blur(out, weight_r, sigma)
    out += (local_o - local_r) * confidence[..., None]
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


LIGHTNESS_ZERO = 16 * 255 / 100
"""Where OpenCV's 8-bit L* (0-255) would put zero luminance: L* = 116 Y^(1/3) - 16, so a ratio of
luminance (what a change of light does) is a ratio of L* + 16."""


def _match_lightness_ratios(
    lightness: np.ndarray,
    lightness_original: np.ndarray,
    skin: np.ndarray,
    original_skin: np.ndarray,
    low: float,
    high: float,
) -> np.ndarray:
    """The render's L* (OpenCV's 8-bit scale, float [H, W]) with its skin's log-mean and log-spread
    of L* + `LIGHTNESS_ZERO` set to the original skin's (the spread's change bounded to
    [`low`, `high`]): a pixel's lightness ratio to the skin's is raised to the spread's ratio, so a
    shadow stays a shadow of the skin's level however much darker the original's skin is."""
    logs = np.log(np.maximum(lightness, 0.0) + LIGHTNESS_ZERO)
    logs_original = np.log(np.maximum(lightness_original, 0.0) + LIGHTNESS_ZERO)
    mean, spread = logs[skin].mean(), logs[skin].std() + 1e-4
    mean_original, spread_original = (
        logs_original[original_skin].mean(),
        logs_original[original_skin].std() + 1e-4,
    )
    scale = np.clip(spread_original / spread, low, high)
    return np.exp((logs - mean) * scale + mean_original) - LIGHTNESS_ZERO


SHADING_COLOUR_SLOPE_MAX = 1.0
"""Largest |d a* / d L*| or |d b* / d L*| (OpenCV's 8-bit Lab) that `_match_shading_colour` gives a
fake's skin. Only a negative slope of the original's is followed (shadows warmer than the lit
skin); where the original's is 0 or positive the render keeps its own. On 79 LFW and CelebA
photos the skin's were -0.40 to 0.13 (median -0.03; 5-95 % -0.25 to 0.12): mostly warmer where
darker; the positive ones are stubble in the skin, a colour cast or a small face's compression,
and copied they gave the fake grey shadows: on a 36-px face of wild/photos/00.jpg (0.06, 0.11)
every candidate's upper lip then read as a moustache (6 of 8 without the step)."""
SHADING_COLOUR_RANGE = 2.0
"""`_match_shading_colour` changes a pixel's colour as if it were at most this many of the original
skin's lightness standard deviations from the skin's mean: a render's shadow deeper than any on the
original's skin takes the colour of the original's deepest, and hair, eyes and background far darker
or lighter than skin a bounded shift, not one that grows without bound (dark hair turned red)."""


def shading_colour_slopes(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Least-squares slopes of a* and b* on L* over the `skin` pixels of a float Lab image: how the
    skin's colour changes with its shading (negative: warmer where darker)."""
    pixels = lab[skin]
    centred = pixels - pixels.mean(0)
    spread = float((centred[:, 0] ** 2).sum()) + 1e-6
    return (centred[:, 0:1] * centred[:, 1:]).sum(0) / spread


def _match_shading_colour(
    lab: np.ndarray, lab_original: np.ndarray, skin: np.ndarray, original_skin: np.ndarray
) -> np.ndarray:
    """Float Lab `lab` (the colour-transferred render, its skin `skin`) with a* and b* varying with
    L* as the original's (`lab_original`, its skin `original_skin`) do: each channel's slope on L*
    over the skin replaced by the original's, around the skin's mean lightness (the skin's mean
    colour stays about where it was)."""
    wanted, own = shading_colour_slopes(lab_original, original_skin), shading_colour_slopes(lab, skin)
    # a channel whose original is not warmer in shadow keeps the render's own relation
    change = np.where(wanted < 0, np.maximum(wanted, -SHADING_COLOUR_SLOPE_MAX) - own, 0.0)
    reach = SHADING_COLOUR_RANGE * float(lab_original[..., 0][original_skin].std())
    offset = np.clip(lab[..., 0] - float(lab[..., 0][skin].mean()), -reach, reach)
    out = lab.copy()
    out[..., 1:] += offset[..., None] * change
    return out


def _bare_cheek(cheek: np.ndarray, bare: np.ndarray) -> bool:
    pixels = cheek.sum()
    return pixels >= CHEEK_MIN_PIXELS and (cheek & bare).sum() >= CHEEK_MIN_SKIN * pixels


def bare_skin(image: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Boolean mask of a crop's bare skin for `match_cheek_tone`: its `skin` mask (`skin_mask`) or
    coloured like it (`skin_coloured`), which reaches the outline the skin mask keeps away from."""
    return skin | skin_coloured(image, skin)


def match_cheek_tone(
    coloured: np.ndarray,
    original: np.ndarray,
    render_points: np.ndarray,
    original_points: np.ndarray,
    original_skin: np.ndarray,
    region: np.ndarray,
    width: float,
    original_bare: np.ndarray | None = None,
) -> np.ndarray:
    """The recoloured render (uint8 RGB, its mesh `render_points` in pixels) with each cheek's
    trimmed-mean Lab shifted to the original's cheek's: the shift spread smoothly from the cheek
    (`CHEEK_TONE_SIGMA`), scaled so the cheek's mean moves by exactly that much, and faded out with
    `region`. One colour per cheek: the skin tone, not the original's shading within the cheek
    (which carries the face's shape). A cheek hidden in the original (`_bare_cheek`: turned away,
    covered by a hand, hair or a shadow) keeps the colour transfer's tone; one the render shows
    but does not show bare (its own shadow or a lock of its hair) is still moved to the original's
    tone there, read over its whole polygon, trimmed.

    The original's cheek is bare where its pixels are `original_skin` or coloured like it
    (`skin_coloured`): `skin_mask` keeps `SKIN_INSET` away from the outline, where the cheeks of a
    slightly turned face lie (LFW, 150 pairs: cheek ITA difference 2.86 -> 2.44 degrees). A far
    cheek the mesh lays over the background beside a face turned further (Courteney Cox's in
    wild/photos/group_t1.jpg, on the wall) is coloured like no skin and still skipped.
    `original_bare`: that mask (`bare_skin`), where the caller already has it."""
    size = original.shape[0]
    lab_c = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    sigma = max(1.0, CHEEK_TONE_SIGMA * width)
    shift = np.zeros_like(lab_c)
    bare = bare_skin(original, original_skin) if original_bare is None else original_bare
    for polygon in CHEEK_POLYGONS:
        cheek_r = cheek_mask(size, render_points / size, (polygon,))
        cheek_o = cheek_mask(size, original_points / size, (polygon,))
        if cheek_r.sum() < CHEEK_MIN_PIXELS or not _bare_cheek(cheek_o, bare):
            continue
        # Read as the cheek's tone is read (`skin_tone.cheek_lab`): the whole polygon, trimmed.
        delta = trimmed_lab_mean(lab_o[cheek_o]) - trimmed_lab_mean(lab_c[cheek_r])
        delta = np.clip(delta, -CHEEK_TONE_MAX, CHEEK_TONE_MAX)
        spread = cv2.GaussianBlur(cheek_r.astype(np.float32), (0, 0), sigma)
        shift += (spread / spread[cheek_r].mean())[..., None] * delta
    return _shift_lab(coloured, lab_c, shift * region[..., None])


HIGHLIGHT_QUANTILES = (0.9, 0.995)
"""`limit_highlights`: the original's bare-skin lightness quantile where easing starts (the knee)
and the one the fake's skin approaches and never exceeds (the ceiling)."""
HIGHLIGHT_MIN_RANGE = 3.0
"""Smallest distance (OpenCV's 8-bit L*) between the knee and the ceiling: a flat-lit skin's
quantiles lie close together, and a ceiling at the knee would flatten the fake's shading."""


def limit_highlights(
    coloured: np.ndarray,
    original: np.ndarray,
    original_bare: np.ndarray,
    points: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """uint8 RGB `coloured` (the recoloured render, its mesh `points` in pixels) with its lightness
    inside `region` kept under the original's: read over the original's bare skin in the region
    (`bare_skin`, highlights included), L* above the `HIGHLIGHT_QUANTILES` knee is eased
    (tanh) towards the ceiling, colour (a*, b*) kept, so a highlight stays a highlight of the
    photo's light and is not clipped to white. The eyes' and mouth's openings (sclera, teeth) are
    left alone."""
    size = original.shape[0]
    support = original_bare & (region > 0.5)
    if support.sum() < 16:
        return coloured
    lightness = cv2.cvtColor(original, cv2.COLOR_RGB2LAB)[..., 0][support].astype(np.float32)
    knee, ceiling = np.quantile(lightness, HIGHLIGHT_QUANTILES)
    ceiling = max(float(ceiling), float(knee) + HIGHLIGHT_MIN_RANGE)
    lab = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    over = lab[..., 0] - knee
    if not (over > 0).any():
        return coloured
    room = ceiling - knee
    eased = np.where(over > 0, knee + room * np.tanh(np.maximum(over, 0) / room), lab[..., 0])
    weight = region * (1 - eyes_and_mouth_mask(points, size))
    shift = np.zeros_like(lab)
    shift[..., 0] = (eased - lab[..., 0]) * weight
    return _shift_lab(coloured, lab, shift)


def _shift_lab(coloured: np.ndarray, lab: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """uint8 RGB `coloured` (its float Lab `lab`, OpenCV's 8-bit scale) with `shift` [S, S, 3]
    added in Lab; pixels moved by less than half a level keep their RGB (the Lab round trip would
    only add rounding there)."""
    magnitude = np.abs(shift)
    # (the largest of three channels taken pairwise: numpy's reduction over a last axis of 3 took
    # 3 ms of a candidate's fusion per call, this 0.1)
    moved = np.maximum(np.maximum(magnitude[..., 0], magnitude[..., 1]), magnitude[..., 2]) >= 0.5
    out = coloured.copy()
    rows, columns = np.flatnonzero(moved.any(1)), np.flatnonzero(moved.any(0))
    if not len(rows):
        return out
    # only the box around the moved pixels makes the round trip (the conversion is per pixel)
    box = slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)
    shifted = np.clip(np.rint(lab[box] + shift[box]), 0, 255).astype(np.uint8)
    inside = moved[box]
    out[box][inside] = cv2.cvtColor(shifted, cv2.COLOR_LAB2RGB)[inside]
    return out


def lips_mask(points: np.ndarray, size: int) -> np.ndarray:
    """Hard bool mask [size, size] of the lips of a mesh (pixels): inside the outer lip ring, outside
    the mouth's opening."""

    def ring(indices: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros((size, size), np.uint8)
        polygon = np.round(points[list(indices), :2] * 16).astype(np.int32)
        cv2.fillPoly(mask, [polygon], 1, lineType=cv2.LINE_8, shift=4)
        return mask.astype(bool)

    return ring(LIPS_OUTER) & ~ring(LIPS_INNER)


def match_lip_tone(
    coloured: np.ndarray,
    original: np.ndarray,
    render_points: np.ndarray,
    original_points: np.ndarray,
    render_skin: np.ndarray,
    original_skin: np.ndarray,
    region: np.ndarray,
    width: float,
) -> np.ndarray:
    """The recoloured render (uint8 RGB) with lips about as red over its own skin as the original's
    are over theirs (within `LIP_REDNESS_MARGIN`), fading out just outside the lips
    (`LIP_TONE_FEATHER`) and with `region`. Too red: each lip pixel's a* above the skin's is scaled
    down by the ratio that brings the lips' trimmed mean there, and a lip pixel no redder than the
    skin does not move (lowered by one amount, the lips' dark edges, their a* near the skin's, went
    below the skin's and showed as a grey-green line along an opened mouth); lightness and hue stay
    the render's. Too pale (an original wearing lipstick): the lips are moved by one amount in
    L*, a* and b* to the original lips' colour over its skin (at most `LIP_RAISE_MAX`). Lips too
    small or without skin to compare against in either face are left as they are."""
    size = original.shape[0]
    lips_r = lips_mask(render_points, size)
    lips_o = lips_mask(original_points, size)
    if min(lips_r.sum(), lips_o.sum()) < LIP_MIN_PIXELS or not (render_skin.any() and original_skin.any()):
        return coloured
    lab_c = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)

    skin_o, skin_c = trimmed_lab_mean(lab_o[original_skin]), trimmed_lab_mean(lab_c[render_skin])
    lips_over_skin_o = trimmed_lab_mean(lab_o[lips_o]) - skin_o
    lips_over_skin_c = trimmed_lab_mean(lab_c[lips_r]) - skin_c
    original_redness = max(float(lips_over_skin_o[1]), LIP_REDNESS_FLOOR)
    allowed = original_redness + LIP_REDNESS_MARGIN
    found = float(lips_over_skin_c[1])
    if found - allowed <= 0.5 and original_redness - LIP_REDNESS_MARGIN - found <= 0.5:
        return coloured
    outside = cv2.distanceTransform((~lips_r).astype(np.uint8), cv2.DIST_L2, 5)
    weight = np.clip(1 - outside / max(1.0, LIP_TONE_FEATHER * width), 0, 1) * region
    shift = np.zeros_like(lab_c)
    if found > allowed:
        above_skin = np.maximum(lab_c[..., 1] - float(skin_c[1]), 0)
        shift[..., 1] = weight * -above_skin * (1 - allowed / found)  # a* only
    else:
        cap = np.asarray(LIP_RAISE_MAX)
        shift[:] = weight[..., None] * np.clip(lips_over_skin_o - lips_over_skin_c, -cap, cap)
    return _shift_lab(coloured, lab_c, shift)


# MediaPipe's eye openings (the lid margins, in order round each eye) and irises (centre, then four
# points on the iris's edge), as FaceLandmarksConnections lists them.
EYE_OPENINGS = (
    (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
)
IRISES = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))
IRIS_MIN_PIXELS = 12
IRIS_MIN_VISIBLE = 0.3
"""An iris showing fewer pixels than `IRIS_MIN_PIXELS`, or less than this fraction of its disc,
inside its eye's opening in either face (a closed or half-closed eye, a small face, an eye turned
away) keeps the render's colour: a closed eye's disc reads the lashes."""
IRIS_TONE_MAX = 100.0
"""Largest shift per Lab channel (OpenCV's 8-bit Lab) of an iris's colour."""
IRIS_RADIUS = 0.85
"""The iris disc's radius as a fraction of the mesh's: its edge points sit on the iris's rim, and a
disc a pixel off there takes in sclera."""
IRIS_LIGHTNESS_RANGE = (0.05, 0.5)
"""Lightness quantiles of an iris disc's pixels averaged for its colour: the darker half without the
pupil's core, because the bright tail is sclera and the catch-light (a whole-disc mean read dark
brown eyes as grey)."""


def iris_masks(points: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per eye, bool masks [size, size] of its visible iris (the disc through the mesh's iris
    points, inside the eye's opening: lids cover part of it) and of the opening. The iris is empty
    for a mesh without irises and for an eye that shows less than `IRIS_MIN_VISIBLE` of it."""
    if len(points) < max(max(i) for i in IRISES) + 1:
        return [(np.zeros((size, size), bool), np.zeros((size, size), bool)) for _ in IRISES]
    rings = [points[list(eye), :2] for eye in EYE_OPENINGS]
    masks = []
    for iris in IRISES:
        centre = points[iris[0], :2]
        radius = IRIS_RADIUS * float(np.linalg.norm(points[list(iris[1:]), :2] - centre, axis=1).mean())
        disc = np.zeros((size, size), np.uint8)
        cv2.circle(
            disc, tuple(int(round(v * 16)) for v in centre), int(round(radius * 16)), 1, -1, cv2.LINE_8, 4
        )
        # the opening whose lids surround this iris (MediaPipe's iris numbering is the viewer's)
        ring = min(rings, key=lambda ring: float(np.linalg.norm(ring.mean(0) - centre)))
        opening = _polygon_mask(ring, size) > 0.5
        visible = disc.astype(bool) & opening
        if visible.sum() < IRIS_MIN_VISIBLE * disc.sum():
            visible[:] = False
        masks.append((visible, opening))
    return masks


def iris_colour(lab: np.ndarray) -> np.ndarray:
    """Mean Lab [3] of an iris's pixels [N, 3] within `IRIS_LIGHTNESS_RANGE` of their lightness."""
    low, high = np.quantile(lab[:, 0], IRIS_LIGHTNESS_RANGE)
    return lab[(lab[:, 0] >= low) & (lab[:, 0] <= high)].mean(axis=0)


def match_iris_tone(
    coloured: np.ndarray,
    original: np.ndarray,
    render_points: np.ndarray,
    original_points: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """The recoloured render (uint8 RGB, its mesh `render_points` in pixels) with each visible iris
    shifted to the colour of the original's (`iris_colour`). Renders' eyes are mostly light (blue,
    grey, green) whatever the dummy, and the colour transfer matches skin only: dark-eyed
    originals were given pale-eyed fakes, which read as another ancestry. The shift is feathered
    by a pixel and kept inside the eye's opening."""
    size = original.shape[0]
    lab_c = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    shift = np.zeros_like(lab_c)
    for (iris_r, opening), (iris_o, _) in zip(
        iris_masks(render_points, size), iris_masks(original_points, size), strict=True
    ):
        if min(iris_r.sum(), iris_o.sum()) < IRIS_MIN_PIXELS:
            continue
        delta = np.clip(
            iris_colour(lab_o[iris_o]) - iris_colour(lab_c[iris_r]), -IRIS_TONE_MAX, IRIS_TONE_MAX
        )
        # Darkened, never lightened: a render's iris reads darker than it looks (lashes and the lid's
        # shadow across it), and lifted whole it came out as a flat grey disc.
        delta[0] = min(delta[0], 0.0)
        soft = np.minimum(cv2.GaussianBlur(iris_r.astype(np.float32), (0, 0), 1.0) * 2, 1.0) * opening
        shift += soft[..., None] * delta
    return _shift_lab(coloured, lab_c, shift * region[..., None])


BROW_DARK_RANGE = (0.02, 0.25)
"""Lightness quantiles of a brow region's pixels taken as its hairs (the region is the hull of the
brow's landmarks, hairs and much skin where a brow is thin)."""
BROW_CONTRAST_RANGE = (1.0, 1.5)
"""Bounds of the factor on the fake's brows' darkness below its skin: darkened, never lightened.
Lifted towards the skin, a render's dark brown hairs turned grey-blue, and a thin dark brow (much
skin in its region) read paler than it is (lin-manuel-miranda). At most 1.5: at 2, a brow under
the original's own fringe (the hair read as brow) came out as a black bar (CelebA)."""
BROW_MIN_PIXELS = 30
BROW_MIN_DARKNESS = 3.0
"""A brow region smaller than `BROW_MIN_PIXELS`, or whose hairs are less than this (OpenCV's 8-bit
L) darker than the skin (no brow to read, a brow hidden by hair or glasses' frames), in either face
keeps the render's brow."""


def brow_masks(points: np.ndarray, size: int) -> list[np.ndarray]:
    """Per brow, a bool mask [size, size] of the hull of its mesh landmarks (pixels)."""
    return [_polygon_mask(points[list(brow), :2], size) > 0.5 for brow in KEEP_REGIONS["brows"]]


def brow_darkness(lightness: np.ndarray, brow: np.ndarray, skin_lightness: float) -> float:
    """How much darker than `skin_lightness` the hairs (`BROW_DARK_RANGE`) of the `brow` region of a
    lightness image [S, S] are."""
    low, high = np.quantile(lightness[brow], BROW_DARK_RANGE)
    hairs = lightness[brow][(lightness[brow] >= low) & (lightness[brow] <= high)]
    return skin_lightness - float(hairs.mean())


def match_brow_tone(
    coloured: np.ndarray,
    original: np.ndarray,
    render_points: np.ndarray,
    original_points: np.ndarray,
    render_skin: np.ndarray,
    original_skin: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """The recoloured render (uint8 RGB, its mesh `render_points` in pixels) with each brow at least
    as much darker than its skin as the original's brow is than the original's skin: the brow
    region's lightness scaled about the skin's (`BROW_CONTRAST_RANGE`), so hairs move and the skin
    between them hardly does. A dark-haired person's fake got a fair-haired person's pale brows
    (Obama). The brows' shape stays the render's."""
    size = original.shape[0]
    if not (render_skin.any() and original_skin.any()):
        return coloured
    lab_c = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    light_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    skin_c, skin_o = float(np.median(lab_c[..., 0][render_skin])), float(np.median(light_o[original_skin]))
    shift = np.zeros_like(lab_c)
    below = np.maximum(skin_c - lab_c[..., 0], 0)  # how much darker than the skin each pixel is
    for brow_r, brow_o in zip(
        brow_masks(render_points, size), brow_masks(original_points, size), strict=True
    ):
        if min(brow_r.sum(), brow_o.sum()) < BROW_MIN_PIXELS:
            continue
        dark_r = brow_darkness(lab_c[..., 0], brow_r, skin_c)
        dark_o = brow_darkness(light_o, brow_o, skin_o)
        if min(dark_r, dark_o) < BROW_MIN_DARKNESS:
            continue
        factor = float(np.clip(dark_o / dark_r, *BROW_CONTRAST_RANGE))
        soft = np.minimum(cv2.GaussianBlur(brow_r.astype(np.float32), (0, 0), 1.5) * 2, 1.0)
        shift[..., 0] += soft * below * (1 - factor)
    return _shift_lab(coloured, lab_c, shift * region[..., None])


CHROMA_RANGE_QUANTILES = (0.005, 0.995)
"""Quantiles of the original face's a* and b* between which `match_chroma_range` keeps the fake's:
the rare, extreme pixels of the original (a lash's fringe, a specular highlight) do not stretch the
range."""


def eyes_and_mouth_mask(points: np.ndarray, size: int) -> np.ndarray:
    """Hard bool mask [size, size] of both eyes' openings and the mouth inside its outer lip ring
    (lips, teeth and tongue): colours skin never has, which `match_chroma_range` keeps apart."""
    mask = np.zeros((size, size), bool)
    for ring in (*EYE_OPENINGS, LIPS_OUTER):
        mask |= _polygon_mask(points[list(ring), :2], size) > 0.5
    return mask


def match_chroma_range(
    coloured: np.ndarray,
    original: np.ndarray,
    render_points: np.ndarray,
    original_points: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """The recoloured render (uint8 RGB, its mesh `render_points` in pixels) with each pixel's a*
    and b* brought inside the range the original's face shows there (`CHROMA_RANGE_QUANTILES`),
    lightness untouched, read and applied apart for the skin (the replaced region without the
    eyes' openings and the mouth) and for the eyes and mouth (`eyes_and_mouth_mask`): a render's
    teal eyeshadow or greenish shadow becomes the nearest colour of the original's skin, cyan
    teeth the nearest of its eyes and mouth, and a fake whose colours the original already shows
    is left exactly as it is."""
    size = original.shape[0]
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_c = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = region > 0.5
    features_o = eyes_and_mouth_mask(original_points, size)
    features_c = eyes_and_mouth_mask(render_points, size)
    shift = np.zeros_like(lab_c)
    # a shift outside the region is faded to nothing below: only pixels inside it are moved
    touched = region > 0
    for read, moved in ((inside & ~features_o, ~features_c), (inside & features_o, features_c)):
        if read.sum() < 64:
            continue
        low, high = np.quantile(lab_o[read][:, 1:], CHROMA_RANGE_QUANTILES, axis=0)
        shifted = moved & touched
        chroma = lab_c[shifted][:, 1:]
        shift[shifted, 1:] = np.clip(chroma, low, high) - chroma
    return _shift_lab(coloured, lab_c, shift * region[..., None])


GLASSES_EDGE = 100.0
"""`glasses_score` of a fused candidate (its preview, at the original's mesh) at or above which the
rendered face wears glasses. 640 candidates of 32 LFW faces, judged by eye on the clean renders
sorted by score (89 wear glasses): 88 % of those reach 100 on the preview, 0.2 % of the others."""
GLASSES_EDGE_ORIGINAL = 90.0
"""Below this a real photo (more texture: wrinkles, shadows) counts as without glasses, so a fake
must not bring any. Thin frames can score from 41 (a miss). Between this and
`GLASSES_SURE_ORIGINAL` the photo may or may not wear glasses: judged by eye, 14 of the 39 LFW
originals (of 400) scoring 90-150 wore none."""
GLASSES_SURE_ORIGINAL = 150.0
"""At or above this a real photo wears glasses and the fake should keep them: all 10 LFW originals
(of 400, one photo per person) scoring 150 or more did, judged by eye."""


GLASSES_REFERENCE_WIDTH = 160.0
"""Photo pixels a crop spans (`align.crop_source_width`) from which on `glasses_score` is read as it
is: LFW's crops span 158-211 px (5-95 %), where the thresholds above were set by eye."""
GLASSES_SCALE_EXPONENT = 0.5
"""A smaller face's crop is upsampled, which spreads a frame's edge over more crop pixels and lowers
its gradient: on 28 LFW photos with sure glasses scaled so the face is 24-80 px wide (crops spanning
45-150 photo px), the score fell as (span / native span) ** 0.60 (log-log fit; medians 194 at the
native size, 131 at 40 px, 89 at 24). At a 32-px face 6 of the 28 then read as bare (a fake steered
away from glasses) and 18 as unsure. The reading is scaled back by (160 / span) ** 0.5 below 160
(`GLASSES_SCALE_MAX` at most): 21 of 28 sure and none bare at 32 px, with 2 of 698 bare photos
read as sure (1 unscaled). scripts/study_glasses_width.py."""
GLASSES_SCALE_MAX = 2.0
"""The largest factor the scaling applies (a crop spanning 40 photo px; none smaller was measured)."""


def glasses_score(image: np.ndarray, points: np.ndarray, source_width: float | None = None) -> float:
    """How strongly a horizontal edge crosses the nose bridge between the eyes (a spectacle bridge
    or frame): the largest row mean of |d/dy| of the grey image in a band between the inner eye
    corners, from 0.6 below to 0.4 above the bridge point in units of their distance. A uint8 RGB
    crop and its mesh points in pixels. `source_width`: photo pixels the crop spans, when it is a
    small face's upsampled crop or a preview resampled to it (`FusedFace.preview`); the score is
    then scaled to what the face would read at LFW's size (`GLASSES_SCALE_EXPONENT`)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    vertical = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    inner_left, inner_right, bridge = points[133, :2], points[362, :2], points[168, :2]
    x0, x1 = sorted((inner_left[0], inner_right[0]))
    span = x1 - x0
    x0, x1 = int(x0 + span / 5), int(x1 - span / 5)  # the middle: not the eye corners' own edges
    y0, y1 = int(bridge[1] - 0.6 * span), int(bridge[1] + 0.4 * span)
    band = vertical[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    score = float(band.mean(axis=1).max()) if band.size else 0.0
    if source_width is not None and source_width < GLASSES_REFERENCE_WIDTH:
        score *= min((GLASSES_REFERENCE_WIDTH / source_width) ** GLASSES_SCALE_EXPONENT, GLASSES_SCALE_MAX)
    return score


SUNGLASSES_DARK = 0.55
"""A pixel is dark enough to be a tinted lens where its CIE lightness is below this fraction of the
median lightness of the face's bare skin (`skin_mask`)."""
SUNGLASSES_EYES = 0.9
"""`sunglasses_score` at or above which a real photo wears dark glasses, whose lenses are then kept
(`sunglasses_mask`). On 1,493 CelebA photos (every third) sorted by the score and judged by eye,
the photos scoring 0.9 or more wore dark glasses but for a few with black eye make-up or a deep
shadow over both eyes (about 3 % of the photos score that high); below it, tinted glasses mix with
dark-skinned faces in shadow and make-up."""


def _lightness_and_skin(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float] | None:
    """CIE lightness [S, S] (float) of a uint8 RGB crop and the median over its bare skin, or None
    when too little skin shows to tell."""
    skin = skin_mask(points, image)
    if skin.sum() < 16:
        return None
    lightness = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    return lightness, float(np.median(lightness[skin]))


def sunglasses_score(image: np.ndarray, points: np.ndarray) -> float:
    """The smaller, over the two eyes, of the fraction of dark pixels (`SUNGLASSES_DARK`) in the eye
    region (contour, lids up to the crease, iris: `KEEP_REGIONS["eyes"]`). Dark lenses cover both
    eyes whole; open eyes leave their lids and whites lighter, and a shadow or a lock of hair
    mostly covers one. A uint8 RGB crop and its mesh points in pixels; 0 when no skin shows."""
    found = _lightness_and_skin(image, points)
    if found is None:
        return 0.0
    lightness, skin = found
    fractions = [
        float((lightness[eye] < SUNGLASSES_DARK * skin).mean()) if eye.any() else 0.0
        for eye in eye_region_masks(points, image.shape[0])
    ]
    return min(fractions)


def eye_region_masks(points: np.ndarray, size: int) -> list[np.ndarray]:
    """Hard bool masks [size, size] of each eye's region (contour, lids up to the crease, iris:
    `KEEP_REGIONS["eyes"]`) of a mesh in pixels: where dark lenses show (`sunglasses_score`)."""
    masks = []
    for polygon in KEEP_REGIONS["eyes"]:
        present = [i for i in polygon if i < len(points)]
        masks.append(_polygon_mask(points[present, :2], size) > 0.5)
    return masks


def sunglasses_mask(
    image: np.ndarray, points: np.ndarray, grow: float = 0.02, feather: float = 0.02
) -> np.ndarray:
    """Soft mask [S, S] in [0, 1] of the dark lenses (and the frame around them) over both eyes of a
    uint8 RGB crop with its mesh points: around each eye, within half an eye width beside it and
    0.6 eye widths above and below, the dark pixels (`SUNGLASSES_DARK`), closed so reflections
    count as lens, the parts that touch the eye, filled to their convex hull; grown by `grow` and
    eased to 0 over `feather` face widths outside (`FusionSettings.keep_sunglasses` says what keeping
    them costs)."""
    hard = _lens_hulls(image, points)
    if not hard.any():
        return hard.astype(np.float32)
    return _feathered(hard, face_width(points), grow, feather)


def _feathered(hard: np.ndarray, width: float, grow: float, feather: float) -> np.ndarray:
    """A hard uint8 mask grown by `grow` and eased to 0 over `feather` face widths outside."""
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, 5)
    t = np.clip((outside - grow * width) / max(1.0, feather * width), 0, 1)
    return (1 - t * t * (3 - 2 * t)).astype(np.float32)


def _lens_hulls(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Hard uint8 mask of `sunglasses_mask` before it is grown and feathered."""
    size = image.shape[0]
    found = _lightness_and_skin(image, points)
    if found is None:
        return np.zeros((size, size), np.uint8)
    lightness, skin = found
    width = face_width(points)
    dark = (lightness < SUNGLASSES_DARK * skin).astype(np.uint8)
    radius = max(1, int(round(0.04 * width)))
    closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    hard = np.zeros((size, size), np.uint8)
    for polygon in KEEP_REGIONS["eyes"]:
        present = [i for i in polygon if i < len(points)]
        eye_points = points[present, :2]
        eye = _polygon_mask(eye_points, size) > 0.5
        (x0, y0), (x1, y1) = eye_points.min(0), eye_points.max(0)
        span = x1 - x0
        window = np.zeros((size, size), np.uint8)
        xa, xb = int(max(0, x0 - 0.5 * span)), int(min(size, x1 + 0.5 * span + 1))
        ya, yb = int(max(0, y0 - 0.6 * span)), int(min(size, y1 + 0.6 * span + 1))
        window[ya:yb, xa:xb] = 1
        lens = cv2.morphologyEx(dark & window, cv2.MORPH_CLOSE, closing) & window
        count, labels = cv2.connectedComponents(lens)
        touching = [k for k in range(1, count) if (labels[eye] == k).any()]
        if not touching:
            continue
        ys, xs = np.nonzero(np.isin(labels, touching))
        hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
        cv2.fillConvexPoly(hard, hull, 1)
    return hard


LENS_SHAPE = (0.8, 0.55)
"""Half width and half height, in eye widths, of the ellipse around each eye that bounds a tinted
lens (`tinted_lens_mask`): the dark pixels' hull alone took in the frame's top bar, the brows and
the bridge where they touch the lens, and laid a dark band across a fake's brows (CelebA)."""


def tinted_lens_mask(image: np.ndarray, points: np.ndarray, feather: float = 0.02) -> np.ndarray:
    """Soft mask [S, S] in [0, 1] of the partly dark lenses of a uint8 RGB crop with its mesh points,
    to tint a fake through (`tint_lenses`): the lenses' hull (`sunglasses_mask`, not grown) inside
    a lens-shaped ellipse around each eye (`LENS_SHAPE`), eased to 0 over `feather` face widths."""
    size = image.shape[0]
    hard = _lens_hulls(image, points)
    if not hard.any():
        return hard.astype(np.float32)
    ellipses = np.zeros((size, size), np.uint8)
    for polygon in KEEP_REGIONS["eyes"]:
        eye = points[[i for i in polygon if i < len(points)], :2]
        (x0, y0), (x1, y1) = eye.min(0), eye.max(0)
        span = x1 - x0
        centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
        axes = (max(1, int(LENS_SHAPE[0] * span)), max(1, int(LENS_SHAPE[1] * span)))
        cv2.ellipse(ellipses, centre, axes, 0, 0, 360, 1, -1)
    hard &= ellipses
    if not hard.any():
        return hard.astype(np.float32)
    return _feathered(hard, face_width(points), 0.0, feather)


SUNGLASSES_EYES_TINTED = 0.75
"""`sunglasses_score` from which up to `SUNGLASSES_EYES` a real photo whose nose bridge reads sure
glasses (`glasses_score` >= `GLASSES_SURE_ORIGINAL`) wears tinted or partly dark glasses
(`wears_tinted_glasses`): lenses that leave a rim of lid or a reflection light. Of all 5,310 CelebA
photos, 70 score 0.6-0.9 with a sure bridge; judged by eye, 41 of the 43 at 0.75 or more wear dark
glasses (the others: a dark-eyed man without glasses, a boxer's headgear), against 11 of the 27
below (eye make-up, shadowed sockets under caps and fringes, thick clear frames over dark eyes)."""


UNDER_EYE_BAND = (0.08, 0.35)
"""The band below each eye `under_eye_shade` reads, in eye widths below the lower lid: clear of the
lashes, above the cheek, where a lens still covers."""
UNDER_EYE_TINTED = 0.65
"""`under_eye_shade` at or below which the skin under both eyes reads as seen through tinted lenses.
Read as the search reads candidates (at the original's mesh) on session 39's evaluation sheets: the
three LFW fakes of clear-glasses wearers drawn in tinted lenses 0.31-0.54, the fakes in clear
frames 0.74-0.89; one CelebA fake under a cap's shadow, in no glasses, 0.41."""

SUNGLASSES_EYES_SHADED = 0.5
"""`sunglasses_score` from which a real photo the glasses reader reads as wearing glasses, and whose
skin under both eyes reads at most `UNDER_EYE_TINTED_ORIGINAL`, wears tinted lenses (`lens_kind`)
though its bridge reads no sure frame: aviators and thin metal bridges score 80-150 there, and
their wearers' fakes showed their own eyes through clear glasses (4 of the 150 CelebA evaluation
photos on session 41's sheet). See `UNDER_EYE_TINTED_ORIGINAL` for what the rule takes in."""
UNDER_EYE_TINTED_ORIGINAL = 0.55
"""`under_eye_shade` at or below which an original read as in glasses from `SUNGLASSES_EYES_SHADED`
wears tinted lenses. Of the 5,310 CelebA photos the detector finds a face in and 4,281 LFW ones
(each person's first), 66 in glasses by the reader score 0.5 or more with the skin under the
eyes at 0.7 or less and were read as in neither dark nor tinted lenses before (session 42,
`scripts/study_lens_cues.py`); judged by eye on their crops sorted by the shade, 38 of the 42 up to 0.55
wear sunglasses or tinted lenses (the others clear glasses over shadowed eyes, a smiling old man
at 0.44 among them), and 15 of the 24 above it. A clear-glasses wearer read as tinted loses
little: the tint only dims the fake's eyes to the original's median there."""

UNDER_EYE_DIMMED_BY = 0.2
"""A fused candidate in frames whose skin under the eyes reads at most `UNDER_EYE_TINTED` and at
least this much below the original's (`under_eye_shade`, both at the original's mesh, so under
the same light) wears lenses that dim it, however light they look: the search's push away from
the original drifted a clear-glasses wearer's fake into mirrored grey sunglasses that hid its
eyes (LFW pair 44, key B, session 42), whose lenses read 0.00-0.43 dark (`sunglasses_score`) and
the skin under them 0.46-0.69, against 0.81-1.22 for that search's candidates in clear frames and
about 1.0 on the original. Relative to the original, so a face whose own sockets are shadowed
does not lose its clear-framed candidates."""

SUNGLASSES_EYES_FAINT = 0.45
"""`sunglasses_score` from which a fake in frames whose under-eye skin reads tinted
(`UNDER_EYE_TINTED`) wears tinted lenses. On the sheets above the tinted fakes read 0.52-0.66,
below `SUNGLASSES_EYES_TINTED`, and fakes in clear frames up to 0.56 (the under-eye skin tells
them apart); below 0.45 the eyes show light enough whatever the lenses."""


def under_eye_shade(image: np.ndarray, points: np.ndarray) -> float:
    """The lighter, over the two eyes, of the median CIE lightness of the skin band under an eye
    (`UNDER_EYE_BAND`) over the median of the face's bare skin: about 1 for bare skin, lower under
    tinted lenses, which cover it, and not for dark eyes or black make-up, which do not (those
    `sunglasses_score` counts as dark too). A uint8 RGB crop and its mesh points in pixels; 1 when
    no skin shows."""
    found = _lightness_and_skin(image, points)
    if found is None:
        return 1.0
    lightness, skin = found
    near, far = UNDER_EYE_BAND
    shades = []
    for eye in range(len(EYE_CORNERS)):
        if (found := _eye_frame(points, eye)) is None:
            continue
        (_, _, down), width = found
        lid = points[_lid_contours(eye)[1], :2]
        band = np.concatenate([lid + near * width * down, (lid + far * width * down)[::-1]])
        inside = np.zeros(lightness.shape, np.uint8)  # the band curves with the lid: not a convex hull
        cv2.fillPoly(inside, [np.round(band).astype(np.int32)], 1)
        inside = inside > 0
        if inside.any():
            shades.append(float(np.median(lightness[inside])) / max(skin, 1e-6))
    return max(shades) if shades else 1.0


def lens_kind(
    image: np.ndarray, points: np.ndarray, source_width: float | None = None, glasses: bool | None = None
) -> str | None:
    """What a real photo's crop (uint8, mesh points in pixels) wears over its eyes: "dark" glasses
    (eyes read `SUNGLASSES_EYES` dark), "tinted" ones (partly dark: from `SUNGLASSES_EYES_TINTED`
    behind a sure frame bridge, or from `SUNGLASSES_EYES_SHADED` where `glasses`, the glasses
    reader's verdict on the photo (`readers.original_glasses`), is True and the skin under both
    eyes is darkened as a lens darkens it, `UNDER_EYE_TINTED_ORIGINAL`), or None. `source_width`
    as for `glasses_score`."""
    score = sunglasses_score(image, points)
    if score >= SUNGLASSES_EYES:
        return "dark"
    if score >= SUNGLASSES_EYES_TINTED and (
        glasses_score(image, points, source_width) >= GLASSES_SURE_ORIGINAL
    ):
        return "tinted"
    if (
        glasses is True
        and score >= SUNGLASSES_EYES_SHADED
        and under_eye_shade(image, points) <= UNDER_EYE_TINTED_ORIGINAL
    ):
        return "tinted"
    return None


def wears_tinted_glasses(
    image: np.ndarray, points: np.ndarray, source_width: float | None = None, glasses: bool | None = None
) -> bool:
    """Whether a real photo's crop shows glasses whose lenses are partly dark (`lens_kind`)."""
    return lens_kind(image, points, source_width, glasses) == "tinted"


def tint_lenses(image: np.ndarray, original: np.ndarray, lenses: np.ndarray) -> np.ndarray:
    """A fake crop (uint8 RGB) seen through the original's lenses: inside the soft mask `lenses`
    (`tinted_lens_mask` of the original), each channel scaled in linear light so that its median
    over the lenses is the original's there, never brightened. The fake's own eyes show through,
    dimmed and coloured as the lens does; none of the original's pixels are kept, as its eyes behind
    partly dark lenses are still its eyes (keeping such lenses whole cost anonymity, session 33).
    The median, not the mean: reflections and the lighter rim of a gradient lens pulled the mean
    up, and a fake tinted to it still read as clear glasses (`sunglasses_score`)."""
    inside = lenses > 0.5
    if inside.sum() < 16:
        return image
    fake = (image.astype(np.float32) / 255.0) ** 2.2
    lens = (original.astype(np.float32) / 255.0) ** 2.2
    through = np.clip(np.median(lens[inside], 0) / np.maximum(np.median(fake[inside], 0), 1e-4), 0.0, 1.0)
    weight = lenses[..., None].astype(np.float32)
    tinted = fake * (1 - weight + weight * through)
    return np.clip(np.rint(255.0 * tinted ** (1 / 2.2)), 0, 255).astype(np.uint8)


FACIAL_HAIR_EDGE = 40.0
"""`facial_hair_score` of a fused candidate (its preview, at the original's mesh) at or above which
the rendered face counts as having a moustache or beard. Renders are smoother and their lip shadows
softer than photos: on 140 fused candidates (70 LFW faces x 2 keyed dummies), judged by eye on the
sorted previews, the clear moustaches and beards scored 39-94; of the 26 at or above 40 about half
had visible hair, the others smiles or dark skin under the nose. A false alarm only costs the
search a candidate."""
FACIAL_HAIR_GAIN_EDGE = 35.0
"""A fused candidate whose `facial_hair_score` exceeds the original's (both at the original's mesh,
so the same lighting, pose and mouth) by this much or more has grown a moustache. On 567
candidates fused for 60 LFW men with bare upper lips, sorted by the gain and judged by eye on
zoomed lips: about nine in ten of the 60 gaining 37 or more showed an added moustache, dark or
grey (most of them under `FACIAL_HAIR_EDGE`), and about four in ten of the next 60 (28-36). A
grey moustache over a shadowed original lip can gain less (its lightness rises while its colour
falls)."""
FACIAL_HAIR_BARE_ORIGINAL = 40.0
"""Below this `facial_hair_score` a real photo counts as clean-shaven, so a fake must not bring a
moustache or beard. On 600 LFW photos (one per person), judged by eye on the sorted crops: between
23 and 40 only six wore facial hair, three of them white (white hair is not darker than skin)."""
FACIAL_HAIR_SURE_ORIGINAL = 100.0
"""At or above this a real photo wears a moustache (or a beard with one) and the fake should keep
it: all 14 of 600 LFW photos did, judged by eye. Between the two thresholds are moustaches, stubble
and smiles whose nose shadows darken the lip alike (about 60 % of those scoring 77-100 wore hair)."""


def _region(image: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Pixels [K, C] of an axis-aligned box, clipped to the image."""
    height, width = image.shape[:2]
    xs = np.clip(np.round([x0, x1]).astype(int), 0, width)
    ys = np.clip(np.round([y0, y1]).astype(int), 0, height)
    return image[ys[0] : ys[1], xs[0] : xs[1]].reshape(-1, image.shape[-1])


def upper_cheek_squares(points: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(x0, x1, y0, y1) of the two squares on the upper cheeks (mesh points 50 and 280, 0.12 face
    widths) that skin-relative readings compare against: beardless on nearly every face."""
    half = 0.06 * face_width(points)
    return [(x - half, x + half, y - half, y + half) for x, y in points[[50, 280], :2]]


def _darker_and_greyer_than_cheeks(image: np.ndarray, points: np.ndarray, box: tuple) -> float:
    """How much darker and less colourful than the upper cheeks a box (x0, x1, y0, y1) of the face
    is, in percent: 100 (1 - L_box / L_cheeks) + 100 (1 - C_box / C_cheeks), CIE lightness L and
    chroma C, medians over the box and `upper_cheek_squares`. Hair is dark and grey-brown; a
    shadow darkens skin but keeps most of its colour, so the chroma term tells them apart. On a
    photo without colour the darkness term counts twice. A uint8 RGB crop and its mesh points in
    pixels."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1:] = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)[..., None]  # chroma in both
    lightness_chroma = lab[..., :2]
    region = _region(lightness_chroma, *box)
    cheeks = np.concatenate([_region(lightness_chroma, *square) for square in upper_cheek_squares(points)])
    if len(region) == 0 or len(cheeks) == 0:
        return 0.0
    region_l, region_c = np.median(region, axis=0)
    cheek_l, cheek_c = np.median(cheeks, axis=0)
    darker = 100 * (1 - region_l / max(cheek_l, 1.0))
    if cheek_c < 3:  # black-and-white or toned: no colour to lose
        return float(2 * darker)
    return float(darker + 100 * (1 - region_c / cheek_c))


def upper_lip_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the band between the nose and the upper lip where a moustache grows:
    the inner 70 % between the mouth corners (mesh points 61 and 291), from 30 % to 90 % of the
    way from the nose's base (2) to the upper lip (0)."""
    left, right = points[61, 0], points[291, 0]
    mouth, nose, lip = right - left, points[2, 1], points[0, 1]
    return left + 0.15 * mouth, right - 0.15 * mouth, nose + 0.3 * (lip - nose), lip - 0.1 * (lip - nose)


def chin_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the chin where a goatee or beard grows: the inner 70 % between the
    mouth corners, from 25 % to 80 % of the way from the lower lip's edge (mesh point 17) to the
    chin's (152); below 80 % the jaw's own shadow starts on a lowered head."""
    left, right = points[61, 0], points[291, 0]
    mouth, lip, chin = right - left, points[17, 1], points[152, 1]
    return left + 0.15 * mouth, right - 0.15 * mouth, lip + 0.25 * (chin - lip), lip + 0.8 * (chin - lip)


def facial_hair_score(image: np.ndarray, points: np.ndarray) -> float:
    """How much darker and greyer than the cheeks the upper lip is (a moustache, or the beard
    around one): `_darker_and_greyer_than_cheeks` on `upper_lip_box`. A uint8 RGB crop and its
    mesh points in pixels."""
    return _darker_and_greyer_than_cheeks(image, points, upper_lip_box(points))


def chin_hair_score(image: np.ndarray, points: np.ndarray) -> float:
    """How much darker and greyer than the cheeks the chin is (a goatee, a beard or stubble):
    `_darker_and_greyer_than_cheeks` on `chin_box`. A uint8 RGB crop and its mesh points in
    pixels."""
    return _darker_and_greyer_than_cheeks(image, points, chin_box(points))


CHIN_TEXTURE_EDGE = 2.5
"""`chin_texture` of a fused candidate (its preview, at the original's mesh) at or above which the
rendered chin counts as bearded (a beard, goatee or stubble): on 445 candidates fused for 48 LFW
men with bare chins, judged by eye on the sorted chin crops, nearly all 19 at or above 2.5 wore
one (the rest were renders with a smeared lower lip, as well rejected); between 2.0 and 2.5 some
light stubble among bare chins. A darker chin (`chin_hair_score`) does not tell: the 9 candidates
scoring 50 or more were dark skin or shadow, none bearded by this reading."""


def chin_texture(image: np.ndarray, points: np.ndarray) -> float:
    """How much more fine detail the chin (`chin_box`) has than the upper cheeks
    (`upper_cheek_squares`): the mean absolute difference between CIE lightness and its
    Gaussian blur (sigma 1.5 px, hairs' scale in a 256-px crop) in each, as a ratio. Generated
    skin is smooth and a rendered beard or stubble is not, whatever its colour, so on renders this
    reads beards that are neither darker nor greyer than the skin. (On the upper lip it does not
    tell: the nostrils' and philtrum's edges are detail too, and renders' grey moustaches are
    soft.) A uint8 RGB crop and its mesh points in pixels."""
    lightness = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    detail = np.abs(lightness - cv2.GaussianBlur(lightness, (0, 0), 1.5))[..., None]
    region = _region(detail, *chin_box(points))
    cheeks = np.concatenate([_region(detail, *square) for square in upper_cheek_squares(points)])
    if len(region) == 0 or len(cheeks) == 0:
        return 0.0
    return float(region.mean() / max(float(cheeks.mean()), 0.1))


MONOCHROME_CHROMA_STD = 4.0
"""A crop whose a* and b* (OpenCV 8-bit Lab) both vary by at most this standard deviation is a
monochrome photo: black-and-white or toned (sepia). On 84 aligned LFW crops and the 4 fixtures, the
two monochrome ones scored 0.6 and 2.9, the lowest colour photo 5.4."""


def is_monochrome(image: np.ndarray) -> bool:
    """Whether a uint8 RGB crop is a black-and-white or toned photo."""
    chroma = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 1:].reshape(-1, 2).astype(np.float32)
    return bool(chroma.std(axis=0).max() <= MONOCHROME_CHROMA_STD)


def pull_push_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`image` (float [H, W, C]) with the pixels where `known` ([H, W] in [0, 1]) is 0 filled from
    the known ones by pull-push interpolation: weighted averages down an image pyramid, then each
    level's gaps filled from the coarser level on the way up. The fill meets the known pixels
    without a step at their edge and goes smoothly from one side of a gap to the other (a single
    wide blur left a visible seam where it met the face it was taken from)."""
    channels = image.reshape(*known.shape, -1).shape[-1]
    levels = [(image.reshape(*known.shape, channels) * known[..., None], known.astype(np.float32))]
    while min(levels[-1][1].shape) > 4:
        values, weight = levels[-1]
        down = cv2.pyrDown(values)  # OpenCV drops a single channel's axis: put it back
        levels.append((down.reshape(*down.shape[:2], channels), cv2.pyrDown(weight)))
    filled = None
    for values, weight in reversed(levels):
        trust = np.clip(weight, 0, 1)[..., None]  # a level's own average, where it has support
        own = values / np.maximum(weight, 1e-6)[..., None]
        if filled is None:  # the coarsest level: its gaps get the mean of everything known
            coarse = values.sum((0, 1)) / max(float(weight.sum()), 1e-6)
        else:  # pyrUp, not a plain resize: it samples the coarse grid where pyrDown built it
            coarse = cv2.pyrUp(filled, dstsize=weight.shape[::-1]).reshape(values.shape)
        filled = (trust * own + (1 - trust) * coarse).astype(np.float32)
    return filled.reshape(image.shape)


DETAIL_SIGMA = 0.025
"""Scale (face widths) below which an original's pixels count as skin texture (pores, wrinkles,
stubble) in `textured_fill`; coarser than this is shading and outline."""
DETAIL_CLIP = 2.5
"""`textured_fill` clips the original's texture to this many standard deviations of its bare skin's
texture: the sharp edges of an outline, an ear or hair against the background exceed it."""
DETAIL_ENERGY = 1.5
"""`textured_fill` fades the texture where its local RMS exceeds this many times the bare skin's."""


def textured_fill(
    coloured: np.ndarray,
    face: np.ndarray,
    original: np.ndarray,
    original_skin: np.ndarray,
    width: float,
    strength: float = 1.0,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Float RGB [S, S, 3] for the places inside the replaced region where the render (`coloured`,
    uint8, recoloured) is not face (`face` < 0.5): the colour of the render's face around them
    (`pull_push_fill` from its face pixels, less its `features` (a mask of eyes, brows and mouth))
    plus `strength` times the original's fine lightness texture (`DETAIL_SIGMA`, clipped to
    `DETAIL_CLIP` of its skin's), only where the original itself shows skin-coloured pixels. The
    blur alone left flat patches on foreheads and cheeks that read as a smooth, younger face; the
    original's own texture there carries its skin's age and grain, while the coarse shading and
    outline (what carries identity) stay the render's."""
    known = (face > 0.5).astype(np.float32)
    if features is not None:  # colour from skin: dark brows or a mouth must not tint the fill
        known = known * (1 - features)
    fill = pull_push_fill(coloured.astype(np.float32), known)
    if strength <= 0 or original_skin.sum() < 16:
        return fill
    lab = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    lightness = lab[..., 0] * (100 / 255)  # Lab L in [0, 100] ~ RGB steps of 2.55
    detail = lightness - cv2.GaussianBlur(lightness, (0, 0), max(0.7, DETAIL_SIGMA * width))
    skin_energy = float(np.sqrt(np.mean(detail[original_skin] ** 2))) + 1e-3
    detail = np.clip(detail, -DETAIL_CLIP * skin_energy, DETAIL_CLIP * skin_energy)
    # Edges (the outline, an ear, a hairline) are denser in texture than skin around them: faded
    # where the local texture energy exceeds the skin's, so no contour of the original shows.
    local = np.sqrt(cv2.GaussianBlur(detail**2, (0, 0), max(1.0, 2 * DETAIL_SIGMA * width)))
    detail *= np.clip(DETAIL_ENERGY * skin_energy / np.maximum(local, 1e-3), 0, 1) ** 2
    # Only where the original is skin-coloured: its hair and background are not texture to copy.
    mean, std = lab[original_skin].mean(0), lab[original_skin].std(0) + 2.0
    skin_like = (np.sqrt((((lab - mean) / std) ** 2).sum(-1)) <= HAIR_DISTANCE).astype(np.uint8)
    grow = max(1, int(round(0.02 * width)))
    skin_like = cv2.erode(skin_like, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    skin_like = cv2.GaussianBlur(skin_like.astype(np.float32), (0, 0), max(1.0, 0.01 * width))
    return fill + (strength * 2.55 * detail * skin_like)[..., None]


SEAM_BAND = 0.04
"""Face widths on each side of the visible edge of a fake (where the composite turns from the
fake to the original) read for the colour of each side (`edge_mismatch`)."""
SEAM_SIGMA = 0.08
"""Face widths along the edge over which each side's colour is averaged: the step of colour there,
not the texture of either side's skin."""
SEAM_REACH = 0.15
"""Face widths inside the edge over which `match_seam`'s correction fades out: the edge's colour
meets the original's skin, the face's interior keeps the colour transfer's."""
SEAM_MIN_SUPPORT = 0.05
"""An edge pixel's step is read only where each side's ring of skin covers at least this much of
the `SEAM_SIGMA` average there (a ring fully of skin: ~0.2)."""
SEAM_MAX = (30.0, 12.0, 12.0)
"""Largest correction of L*, a*, b* (OpenCV's 8-bit Lab) `match_seam` makes."""


def skin_coloured(image: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels of a uint8 RGB crop coloured like its `skin` (within
    `HAIR_DISTANCE` of the skin's mean in Lab, in its standard deviations): lighter than the skin
    by lightness alone counts as skin too (a highlight, which `skin_mask`'s trim leaves out)."""
    if skin.sum() < 16:
        return np.zeros(skin.shape, bool)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean, std = lab[skin].mean(0), lab[skin].std(0) + 2.0
    deviation = (lab - mean) / std
    deviation[..., 0] = np.minimum(deviation[..., 0], 0)
    return np.sqrt((deviation**2).sum(-1)) <= HAIR_DISTANCE


@dataclass(frozen=True, eq=False)
class EdgeMismatch:
    step: np.ndarray  # float32 [S, S, 3]: Lab of the original's skin just outside minus the fake's inside
    read: np.ndarray  # bool [S, S]: edge pixels where both sides show skin (`step` is meaningful there)
    edge: np.ndarray  # bool [S, S]: the fake's side of its visible edge
    inside: np.ndarray  # float32 [S, S]: distance (pixels) inside the edge, 0 outside

    def contrast(self) -> float | None:
        """Mean |step of L*| (CIE L*, 0-100) over the read edge; None where no edge shows skin on
        both sides."""
        if not self.read.any():
            return None
        return float(np.abs(self.step[..., 0][self.read]).mean() * 100 / 255)


def edge_mismatch(
    fake: np.ndarray,
    original: np.ndarray,
    shown: np.ndarray,
    fake_skin: np.ndarray,
    original_skin: np.ndarray,
    width: float,
) -> EdgeMismatch:
    """How the colour steps across the visible edge of a fake laid into an original crop (both uint8
    RGB [S, S, 3]): `shown` [S, S] is how much of the fake the composite shows, `fake_skin` /
    `original_skin` where each is skin-coloured (`skin_coloured`). Each side's skin is averaged
    in a ring of `SEAM_BAND` face widths along the edge (`SEAM_SIGMA`); where the fake meets the
    original's hair, background or an ear the edge is not read (a step there is no seam)."""
    inside = shown > 0.5
    depth_in = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    depth_out = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5)
    band = max(1.5, SEAM_BAND * width)
    ring_in = (inside & (depth_in <= band) & fake_skin).astype(np.float32)
    ring_out = (~inside & (depth_out <= band) & original_skin).astype(np.float32)
    sigma = max(1.0, SEAM_SIGMA * width)
    lab_f = cv2.cvtColor(fake, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_o = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    step = _masked_blur(lab_o, ring_out, sigma) - _masked_blur(lab_f, ring_in, sigma)
    edge = inside & (depth_in <= 1.5)
    both_sides = np.minimum(_low_pass(ring_in, sigma), _low_pass(ring_out, sigma))
    read = edge & (both_sides >= SEAM_MIN_SUPPORT)
    return EdgeMismatch(step.astype(np.float32), read, edge, depth_in)


def seam_offset(mismatch: EdgeMismatch, width: float) -> np.ndarray:
    """The Lab shift [S, S, 3] (OpenCV's 8-bit scale) that takes out the colour step across a fake's
    visible edge (`mismatch`): the step read along the edge, spread along it and faded inside over
    `SEAM_REACH` face widths. Where the edge meets the original's hair or background the shift
    fades with the share of the nearby edge that reads skin on both sides. Renders are lit and
    toned unlike the photo near their outline (a lit cheek on the original, the render's own
    shadow there), and the colour transfer cannot see the edge: a pale or dark band then ran down
    the face's side where the original's own skin showed beside it."""
    if mismatch.read.sum() < 3:
        return np.zeros(mismatch.step.shape, np.float32)
    reach = max(1.0, SEAM_REACH * width)
    read, edge = mismatch.read.astype(np.float32), mismatch.edge.astype(np.float32)
    step = np.clip(mismatch.step, -np.array(SEAM_MAX), np.array(SEAM_MAX)).astype(np.float32)
    along = _masked_blur(step, read, reach)
    share = np.clip(_low_pass(read, reach) / np.maximum(_low_pass(edge, reach), 1e-3), 0, 1)
    fade = np.exp(-0.5 * (mismatch.inside / reach) ** 2)
    return (along * (share * fade)[..., None]).astype(np.float32)


def match_seam(layer: np.ndarray, mismatch: EdgeMismatch, width: float) -> np.ndarray:
    """The fake `layer` (uint8 RGB, at `mismatch`'s size) with `seam_offset` added in Lab."""
    lab = cv2.cvtColor(layer, cv2.COLOR_RGB2LAB).astype(np.float32)
    return _shift_lab(layer, lab, seam_offset(mismatch, width))


SEAM_SCALE = 2
"""`fuse_face` reads the edge and builds the shift at 1/this of the crop's size (the shift is smooth
over a tenth of a face width); only the shift's last step, in Lab, runs at full size."""


def _seamless(
    coloured: np.ndarray,
    fill: np.ndarray,
    face: np.ndarray,
    shown: np.ndarray,
    original: np.ndarray,
    render_skin: np.ndarray,
    original_skin: np.ndarray,
    width: float,
    settings: FusionSettings,
) -> np.ndarray:
    """`coloured` (the recoloured render, [S, S, 3]) with `match_seam` applied at the edge the
    composite will show (`shown`, `FusedFace.shown`): the render's face's edge inside the region
    when only the render's face is pasted (`render_only`: the original shows around it), else the
    region's own edge (the fill continues the face to it). Returned as uint8; in the second case
    it is the whole fake layer (face and fill)."""
    if settings.render_only:
        fake = np.clip(np.rint(coloured), 0, 255).astype(np.uint8)
    else:
        mixed = coloured * face[..., None] + fill * (1 - face[..., None])
        fake = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    size = fake.shape[0]
    small = max(16, size // SEAM_SCALE)

    def shrink(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)

    def shrink_mask(mask: np.ndarray) -> np.ndarray:
        return shrink(mask.astype(np.float32)) > 0.5

    fake_small, original_small = shrink(fake), shrink(original)
    mismatch = edge_mismatch(
        fake_small,
        original_small,
        shrink(shown.astype(np.float32)),
        skin_coloured(fake_small, shrink_mask(render_skin)),
        skin_coloured(original_small, shrink_mask(original_skin)),
        width * small / size,
    )
    offset = cv2.resize(
        seam_offset(mismatch, width * small / size), (size, size), interpolation=cv2.INTER_LINEAR
    )
    return _shift_lab(fake, cv2.cvtColor(fake, cv2.COLOR_RGB2LAB).astype(np.float32), offset)


SHARPNESS_TOLERANCE = 1.25
"""A render is blurred only where it has more than this times the original's fine detail
(`high_frequency`). Fused renders on 12 LFW photos had 0.6-1.75x their original's; on hamilton's
dark, defocused audience faces 1.5-4.9x."""
SHARPNESS_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Gaussian blurs (crop pixels) tried on a render, weakest first (`match_sharpness`)."""


def as_photo_shows(image: np.ndarray, source_width: float | None) -> np.ndarray:
    """A crop (uint8 or float [S, S, ...]) as it looks pasted back where it spans `source_width`
    photo pixels: area mean down to that width, bilinear back up (numpy twin of
    `nn.crops.at_source_resolution`). Unchanged when the crop was not upsampled."""
    size = image.shape[0]
    if source_width is None or round(source_width) >= size:
        return image
    small = cv2.resize(image, (max(1, round(source_width)),) * 2, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def high_frequency(
    image: np.ndarray, weight: np.ndarray, width: float, source_width: float | None = None
) -> float:
    """Fine detail of a crop: mean |L* − L* blurred at 2 % of the face `width`| where `weight`
    (the face region) is nearly 1, as the photo shows the crop (`as_photo_shows`)."""
    lightness = cv2.cvtColor(as_photo_shows(image, source_width), cv2.COLOR_RGB2LAB)[..., 0].astype(
        np.float32
    )
    detail = np.abs(lightness - cv2.GaussianBlur(lightness, (0, 0), max(0.8, 0.02 * width)))
    core = weight > 0.9
    return float(detail[core].mean()) if core.any() else 0.0


def match_sharpness(
    coloured: np.ndarray,
    original: np.ndarray,
    region: np.ndarray,
    width: float,
    source_width: float | None = None,
) -> np.ndarray:
    """The coloured render (float or uint8 [S, S, 3]) blurred by the weakest of `SHARPNESS_SIGMAS`
    that brings its fine detail in `region`, as the photo will show it, to within
    `SHARPNESS_TOLERANCE` of the original crop's (the strongest when none does); returned as it is
    when already within it. (The original crop is the photo already: judging it at its source
    width again would blur it twice.)"""
    target = SHARPNESS_TOLERANCE * high_frequency(original, region, width)
    as_uint8 = np.clip(np.rint(coloured), 0, 255).astype(np.uint8)
    if high_frequency(as_uint8, region, width, source_width) <= target:
        return coloured
    blurred = coloured
    for sigma in SHARPNESS_SIGMAS:
        blurred = cv2.GaussianBlur(coloured, (0, 0), sigma)
        if (
            high_frequency(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), region, width, source_width)
            <= target
        ):
            break
    return blurred


@dataclass(frozen=True, eq=False)
class FusedFace:
    crop: np.ndarray  # uint8 [S, S, 3]: the rendered face laid onto the original crop's frame
    mask: np.ndarray  # float32 [S, S] in [0, 1]: where it replaces the original
    preview: np.ndarray
    """uint8 [S, S, 3]: the crop as the photo will show it (`as_photo_shows` of the crop's source
    width) alpha-blended into the original: what the search scores."""
    shown: np.ndarray
    """float32 [S, S] in [0, 1]: how much of the fake the composite shows (the region times the
    render's face where only that is pasted): its edge is where a seam would show."""


def fuse_face(
    original: np.ndarray,
    original_points: np.ndarray,
    render: np.ndarray,
    render_points: np.ndarray,
    settings: FusionSettings,
    keep: np.ndarray | None = None,
    source_width: float | None = None,
) -> FusedFace:
    """Lay a rendered face (uint8 crop + its mesh landmarks in pixels) onto an original crop.
    `keep`: a soft mask [S, S] of the original's pixels that stay inside the replaced region (what
    is in front of the face, e.g. `sunglasses_mask`). `source_width`: photo pixels the crop spans
    (`align.crop_source_width`), for `FusionSettings.match_sharpness`."""
    size = original.shape[0]
    matrix = fit_render_to_original(render_points, original_points)
    aligned = cv2.warpAffine(
        render, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    aligned_points = transform_points(render_points[:, :2], matrix)
    moved = aligned_points + settings.warp_strength * (original_points[:, :2] - aligned_points)
    warped = warp_mesh_to(aligned, aligned_points, moved)
    if settings.follow_eyelids:
        closed = follow_eyelids(moved, original_points)
        warped = close_eyelids(warped, moved, closed)
        moved = closed
    interior = None
    if settings.follow_mouth:
        opened = follow_mouth(moved, original_points, settings.close_mouth)
        if opened is not moved:
            warped = open_mouth(warped, moved, opened)
            if mouth_openness(opened).mean() > mouth_openness(moved).mean():
                interior = mouth_interior(original, original_points, opened)
            moved = opened
    region = face_region_mask(original_points, size, settings)
    if keep is not None:
        region = (region * (1 - keep)).astype(np.float32)
    width = face_width(original_points)
    render_skin = skin_mask(moved, warped)
    original_skin = skin_mask(original_points, original)
    original_bare = bare_skin(original, original_skin) if settings.match_cheek_tone else None
    coloured = transfer_colour(
        warped,
        original,
        render_skin,
        original_skin,
        region,
        width,
        settings,
    )
    if settings.match_cheek_tone:
        coloured = match_cheek_tone(
            coloured, original, moved, original_points[:, :2], original_skin, region, width, original_bare
        )
    if settings.match_lip_tone:
        coloured = match_lip_tone(
            coloured, original, moved, original_points[:, :2], render_skin, original_skin, region, width
        )
    if settings.match_brow_tone:
        coloured = match_brow_tone(
            coloured, original, moved, original_points[:, :2], render_skin, original_skin, region
        )
    if settings.match_iris_tone:
        coloured = match_iris_tone(coloured, original, moved, original_points[:, :2], region)
    if settings.match_chroma_range:
        coloured = match_chroma_range(coloured, original, moved, original_points[:, :2], region)
    if is_monochrome(original):
        # A black-and-white or toned photo gets a face of its tone: the render's lightness with the
        # photo's own a*, b*. The colour transfer matches skin statistics, and render colour it
        # cannot see (eyes, lips, the edges) showed as tinted patches on LFW's toned photos.
        lab = cv2.cvtColor(coloured, cv2.COLOR_RGB2LAB)
        lab[..., 1:] = cv2.cvtColor(original, cv2.COLOR_RGB2LAB)[..., 1:]
        coloured = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    if settings.match_sharpness:
        coloured = match_sharpness(coloured, original, region, width, source_width)
    face = render_face_mask(warped, moved, render_skin, settings)
    if settings.render_only:
        # Where the render is not face, the crop carries the original's own (resampled) pixels: the
        # replaced region, and with it the in-pixel payload's room, stays the original's mesh's.
        fill = original
    elif (face > 0.5).sum() < 16:  # no face found in the render to take a colour from
        fill = coloured
    else:
        # The whole region is replaced (the original's outline showed through): what is not face in
        # the render there (a lock of its hair, its background beside a turned head) is filled.
        features = _features_mask(moved, size, SKIN_FEATURES).astype(np.float32)
        fill = textured_fill(coloured, face, original, original_skin, width, settings.fill_texture, features)
    shown = (region * face if settings.render_only else region).astype(np.float32)
    if settings.match_seam:
        coloured = _seamless(
            coloured, fill, face, shown, original, render_skin, original_skin, width, settings
        )
        if settings.match_cheek_tone:
            # The seam's shift reaches into the cheeks, whose tone (where skin tone is read) was set
            # to the original's: set again, or it moved the cheeks' ITA by 1.2° on 150 LFW faces.
            coloured = match_cheek_tone(
                coloured, original, moved, original_points[:, :2], original_skin, region, width, original_bare
            )
        if not settings.render_only:  # the whole fake layer, face and fill, came back corrected
            fill = coloured
    if settings.limit_highlights:
        # last, as the seam's shift may lighten the edge
        bare = bare_skin(original, original_skin) if original_bare is None else original_bare
        limited = limit_highlights(
            np.clip(np.rint(coloured), 0, 255).astype(np.uint8), original, bare, moved, region
        )
        if fill is coloured:  # the whole fake layer
            fill = limited
        coloured = limited
    if interior is not None:
        # last, so no colour step reads or moves the original's own pixels
        inside, opening = interior
        opening = opening[..., None]
        coloured = coloured.astype(np.float32) * (1 - opening) + inside * opening
    face = face[..., None]
    coloured = np.clip(np.rint(coloured * face + fill * (1 - face)), 0, 255).astype(np.uint8)
    alpha = region[..., None]
    # what the search judges: the face as the photo will show it once pasted back (resampled to
    # the crop's source width), inside the original crop, which is the photo already
    at_photo = as_photo_shows(coloured, source_width)
    preview = np.clip(np.rint(original * (1 - alpha) + at_photo * alpha), 0, 255).astype(np.uint8)
    return FusedFace(coloured, region, preview, shown)
