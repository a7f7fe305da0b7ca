"""What a real photo's face wears, read by linear classifiers fitted on faces labelled by eye
(`scripts/fit_photo_reader.py`; model card in `weights/MODEL_CARD.md`): glasses, and hair on the
chin (a beard, goatee or stubble).

The hand-set readings of `fusion` judge rendered faces well but photos poorly. The edge across the
nose bridge (`fusion.glasses_score`) scores thin metal frames like bare skin and fringes and cap
brims like thick frames: on 647 LFW and CelebA faces labelled by eye (82 wearing glasses) its three
states (bare below 90, sure from 150) read 32 wearers as bare and were right on 17 of 24 "sure"; the
glasses reader with the edge score (`glasses_state`), cross-validated, reads 4 wearers as bare and
is right on all 52 it is sure of. The chin's darkness and texture (`fusion.chin_hair_score`,
`chin_texture`) read 33 of 83 chins with hair (of 564 labelled) as surely bare; the chin reader
(`original_bare_chin`), cross-validated, 17 while sparing more bare chins. Candidates' beards are
still judged by the hand-set readings (set on renders); their glasses by the edge or, where the face
is shown large enough, the glasses reader too (`candidate_glasses`): the edge misses thin metal
frames on candidates as it does on photos.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from safetensors.numpy import load_file

from g2face.models.fusion import (
    GLASSES_EDGE,
    GLASSES_EDGE_ORIGINAL,
    GLASSES_SURE_ORIGINAL,
    chin_hair_score,
    chin_texture,
    face_width,
    facial_hair_score,
    glasses_score,
)

GLASSES_READER_FILE = "glasses_reader.safetensors"
CHIN_HAIR_READER_FILE = "chin_hair_reader.safetensors"
TONE_READER_FILE = "tone_reader.safetensors"
"""The fitted readers in `g2face/assets`: `mean`, `scale` (feature standardisation), `weight`, `bias`."""

EYE_BAND_SIZE = (128, 64)
"""(width, height) in pixels of the band the glasses reader reads."""
EYE_BAND_SPAN = 1.2
"""The band's width in face widths (`fusion.face_width`), centred between the outer eye corners and
turned so they lie level; its height is half that. Wide enough for the temples' hinges and a large
frame's outer rims, low enough to leave out the mouth and most of the hair."""
EYE_CORNERS = (33, 263)  # MediaPipe mesh: outer corners of the two eyes

LOWER_FACE_SIZE = (96, 64)
"""(width, height) in pixels of the band the chin reader reads: centred halfway between the nose's
base (mesh point 2) and the chin (152), 1.25 times that distance high, turned so the mouth corners
(61, 291) lie level: the upper lip, mouth, chin and the jaw beside them."""
MOUTH_CORNERS = (61, 291)
LOWER_FACE_COLOUR_GRID = (12, 8)
"""The lower face's CIE Lab at this coarse grid (each channel less its mean over the band) goes into
the chin reader beside the HOG: hair is darker and less colourful than the skin around it, which the
HOG's contrast normalisation discards."""


def _level_band(image: np.ndarray, centre, direction, scale: float, size: tuple[int, int]) -> np.ndarray:
    """`size` pixels of `image` around `centre`, turned so `direction` points along the band's rows,
    at `scale` band pixels per image pixel."""
    angle = float(np.degrees(np.arctan2(direction[1], direction[0])))
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += (size[0] / 2 - centre[0], size[1] / 2 - centre[1])
    # (area averaging where the band shrinks the crop, as the fits' crops were read)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, size, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def eye_band(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The grey band across the eyes (`EYE_BAND_SPAN`, `EYE_BAND_SIZE`) of a uint8 RGB crop whose
    MediaPipe mesh `points` are in its pixels, the eye corners level."""
    left, right = points[EYE_CORNERS[0], :2], points[EYE_CORNERS[1], :2]
    scale = EYE_BAND_SIZE[0] / (EYE_BAND_SPAN * face_width(points))
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return _level_band(grey, (left + right) / 2, right - left, scale, EYE_BAND_SIZE)


def lower_face_band(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The RGB band over the mouth and chin (`LOWER_FACE_SIZE`) of a uint8 RGB crop, mouth level."""
    nose, chin = points[2, :2], points[152, :2]
    left, right = points[MOUTH_CORNERS[0], :2], points[MOUTH_CORNERS[1], :2]
    height = 1.25 * max(float(np.linalg.norm(chin - nose)), 1.0)
    return _level_band(crop, (nose + chin) / 2, right - left, LOWER_FACE_SIZE[1] / height, LOWER_FACE_SIZE)


# HOG: 16-px blocks of four 8-px cells, 9 orientations. Frames and hair are edges and strokes in a
# few places at a few orientations, which is what HOG describes.
_EYE_HOG = cv2.HOGDescriptor(EYE_BAND_SIZE, (16, 16), (8, 8), (8, 8), 9)
_LOWER_FACE_HOG = cv2.HOGDescriptor(LOWER_FACE_SIZE, (16, 16), (8, 8), (8, 8), 9)


def eye_band_features(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The glasses reader's input: the HOG of `eye_band`, float32 [3780]."""
    return _EYE_HOG.compute(eye_band(crop, points)).ravel()


def chin_features(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The chin reader's input, float32 [3063]: the HOG of the grey `lower_face_band`, the hand-set
    readings `fusion.chin_hair_score`, `chin_texture` and `facial_hair_score`, and the band's Lab
    on `LOWER_FACE_COLOUR_GRID` less its mean."""
    band = lower_face_band(crop, points)
    lab = cv2.cvtColor(band, cv2.COLOR_RGB2LAB).astype(np.float32)
    coarse = cv2.resize(lab, LOWER_FACE_COLOUR_GRID, interpolation=cv2.INTER_AREA)
    coarse -= coarse.reshape(-1, 3).mean(0)
    readings = [chin_hair_score(crop, points), chin_texture(crop, points), facial_hair_score(crop, points)]
    hog = _LOWER_FACE_HOG.compute(cv2.cvtColor(band, cv2.COLOR_RGB2GRAY)).ravel()
    return np.concatenate([hog, np.array(readings, np.float32), coarse.ravel()])


class LinearReader:
    """P(yes) of a feature vector: standardisation, then logistic regression."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: float):
        if not mean.shape == scale.shape == weight.shape:
            raise ValueError(f"reader shapes differ: {mean.shape}, {scale.shape}, {weight.shape}")
        self.mean, self.scale, self.weight, self.bias = mean, scale, weight, float(bias)

    @classmethod
    def from_file(cls, path) -> LinearReader:
        tensors = load_file(str(path))
        return cls(tensors["mean"], tensors["scale"], tensors["weight"], float(tensors["bias"][0]))

    @classmethod
    def shipped(cls, name: str) -> LinearReader:
        """A reader shipped in `g2face/assets`."""
        return cls.from_file(resources.files("g2face") / "assets" / name)

    def value(self, features: np.ndarray) -> float:
        """The linear reading itself (a regression's output, a classifier's logit)."""
        standardised = ((features - self.mean) / self.scale).astype(np.float64)
        return float(standardised @ self.weight.astype(np.float64)) + self.bias

    def probability(self, features: np.ndarray) -> float:
        return float(1 / (1 + np.exp(-np.clip(self.value(features), -60, 60))))


@lru_cache(maxsize=1)
def glasses_reader() -> LinearReader:
    """The shipped glasses reader (of `eye_band_features`), loaded once."""
    return LinearReader.shipped(GLASSES_READER_FILE)


@lru_cache(maxsize=1)
def chin_hair_reader() -> LinearReader:
    """The shipped chin reader (of `chin_features`), loaded once."""
    return LinearReader.shipped(CHIN_HAIR_READER_FILE)


@lru_cache(maxsize=1)
def tone_reader() -> LinearReader:
    """The shipped skin-tone reader (of dlib's descriptor), loaded once."""
    return LinearReader.shipped(TONE_READER_FILE)


def descriptor_tone(descriptor: np.ndarray) -> float:
    """A face's skin tone read from its dlib descriptor (the L2-normalised 128-d embedding of
    `priors.dlib_face.DlibFaceEncoder`), in degrees of whole-face ITA as a photo under ordinary
    light would show it (`scripts/fit_tone_reader.py`): the photo's own ITA follows its light and
    white balance as much as the skin; the descriptor is trained to ignore light. Read the same way
    on originals and on renders, so a dummy can be drawn towards an original's tone."""
    return tone_reader().value(np.asarray(descriptor, dtype=np.float64))


GLASSES_SURE_PROBABILITY = 0.85
"""At or above this a photo wears glasses and the fake should keep them. Cross-validated (5 folds) on
the 1,063 faces labelled by eye (260 wearers; session 46 added 416 whose reading the reader of
session 36 had been least sure of, and a sample of the rest), 208 read at 0.85 or more, 3 of them
without glasses (205 of the wearers, 79 %); at 0.8, 6 without for 215; at 0.9, none for 190 (the
session-36 reader on the 416 new faces, which it had never seen: 131 of 177 wearers sure, none
without). With each crop blurred as a face about 34 px wide shows it (the crop spanning 64 photo
pixels), 173 at 0.85, 4 without."""
GLASSES_NONE_PROBABILITY = 0.05
"""Below this a photo counts as without glasses, so a fake must not bring any: cross-validated, 672
of the 803 faces without glasses read below it, and 3 of the 260 with them (one wears reading
glasses low on the nose, under the eye band the reader looks at); 13 wearers with the crops blurred
as a 34-px face's, 22 as a 25-px face's. In between the reading is unsure: glasses are neither kept
nor avoided."""
GLASSES_AGREED_PROBABILITY = 0.5
"""A photo the reader leans towards glasses (at or above this, under `GLASSES_SURE_PROBABILITY`) and
whose nose-bridge edge reads sure (`fusion.GLASSES_SURE_ORIGINAL`) wears glasses too: two readings
of different cues agreeing (Grace Hopper's translucent frames are kept so). Cross-validated, that
adds 7 faces to the reader's 208, 6 of them wearers."""


GLASSES_DOUBT_PROBABILITY = 0.2
"""A photo the reader leans against glasses (under this) and whose nose-bridge edge reads bare
(`fusion.GLASSES_EDGE_ORIGINAL`) wears none either. Cross-validated, that spares 61 more of the 803
faces without glasses a fake with glasses (733 in all) for 4 more wearers read as bare (7 of 260):
on 150 LFW evaluation pairs the reader alone had let three such faces' fakes put glasses on."""


def glasses_state(probability: float, edge_score: float) -> bool | None:
    """False (a fake must not bring glasses), True (the fake should keep them) or None (unsure:
    neither) from the reader's `probability` and the photo's `fusion.glasses_score`: the reader
    decides where it is clear, and where it only leans one way the edge agreeing settles it."""
    if probability < GLASSES_NONE_PROBABILITY:
        return False
    if probability >= GLASSES_SURE_PROBABILITY:
        return True
    if probability < GLASSES_DOUBT_PROBABILITY and edge_score < GLASSES_EDGE_ORIGINAL:
        return False
    if probability >= GLASSES_AGREED_PROBABILITY and edge_score >= GLASSES_SURE_ORIGINAL:
        return True
    return None


def original_glasses(crop: np.ndarray, points: np.ndarray, source_width: float | None = None) -> bool | None:
    """Whether a real photo (a uint8 RGB crop, its mesh `points` in pixels, spanning `source_width`
    photo pixels) wears glasses: `glasses_state` of `glasses_reader` and `fusion.glasses_score`."""
    probability = glasses_reader().probability(eye_band_features(crop, points))
    return glasses_state(probability, glasses_score(crop, points, source_width))


GLASSES_CANDIDATE_PROBABILITY = 0.3
"""At or above this P(glasses) a fused candidate wears glasses even where the edge across its nose
bridge stays under `fusion.GLASSES_EDGE` (thin metal frames, rimless lenses, frames the render draws
faintly: a fake of Biden in a wild photo wore wire frames the edge read at 79, counted as bare). On
792 captured candidates of 69 LFW faces (session 38, the search's previews), 705 shown at least
`GLASSES_READER_MIN_SPAN` wide, the reader read 45 at 0.1 or more under the edge: all 26 at 0.3 or
more wore glasses, judged by eye (among them plain frames of a glasses wearer's candidates, which
had counted as losing them), and 7 of the 19 at 0.1-0.3 did (faint rims mostly; the others
wrinkled or shadowed eyes). That was session 36's reader; session 46's refitted one, on the 600 fake
tiles of two LFW evaluation runs (112 px, enlarged), disagreed with it at this threshold on 13,
7 of them in the new reader's favour by eye."""
GLASSES_READER_MIN_SPAN = 120.0
"""Photo pixels a crop must span (`align.crop_source_width`) for `candidate_glasses` to ask the
reader: a smaller face's preview is blurred to what the photo shows. Of the 87 captured candidates
spanning 57-117 px, the reader read 8 at 0.14-0.78, none wearing glasses (their edges under 40)."""


def candidate_glasses(preview: np.ndarray, points: np.ndarray, source_width: float | None = None) -> bool:
    """Whether a fused candidate wears glasses: a uint8 RGB crop as the photo will show it (the
    preview; the render alone where kept dark glasses stand in front of it), the original's mesh
    `points` in its pixels, spanning `source_width` photo pixels (None: at the crop's size). Its
    frames cross the nose bridge (`fusion.glasses_score` at `fusion.GLASSES_EDGE`), or the glasses
    reader reads them (`GLASSES_CANDIDATE_PROBABILITY`) where the face is shown large enough."""
    if glasses_score(preview, points, source_width) >= GLASSES_EDGE:
        return True
    if source_width is not None and source_width < GLASSES_READER_MIN_SPAN:
        return False
    return glasses_reader().probability(eye_band_features(preview, points)) >= GLASSES_CANDIDATE_PROBABILITY


CHIN_BARE_PROBABILITY = 0.15
"""Below this P(hair on the chin) a real photo's chin counts as bare, so a fake must not bring a
beard. Cross-validated on 564 faces labelled by eye (83 with a beard, goatee or stubble): 460 read
below it, 17 of them with hair; the hand-set reading it replaced (both `chin_hair_score` < 40 and
`chin_texture` < 2) read 463, 33 with hair, so this one spares more clean-shaven chins (443 of 481
against 430) and reads half as many beards as bare. (At 0.05: 419, 6 with hair; 0.1: 451, 13.
Biden's fixture reads 0.14 and 0.07 mirrored.) The reader is not sure enough of a beard to keep one
(at P 0.9, 38 faces, 34 with hair), so a beard is still kept only by chance, never forced."""


CHIN_HAIR_LIKELY_PROBABILITY = 0.5
"""At or above this P(hair on the chin) a real photo's upper lip is not read as surely bare
(`fusion_anonymizer.original_facial_hair`): the lip's reading sees hair only where it is darker and
greyer than the cheeks, and a blond, red or grey moustache over a beard is neither (an LFW man with
a red moustache and goatee: lip -6, chin 0.98; his fake had been forbidden any facial hair). Of the
564 faces labelled by eye, 48 of the 83 with hair on the chin had their lip read bare;
cross-validated, 22 of them read 0.5 or more, and 10 faces without chin hair whose lip read bare
(at 0.3: 26 and 18; 0.7: 15 and 6; 0.9: 10 and 3)."""


def chin_hair_probability(crop: np.ndarray, points: np.ndarray) -> float:
    """P(a beard, goatee or stubble on the chin) of a real photo (a uint8 RGB crop, its mesh points
    in pixels): `chin_hair_reader`."""
    return chin_hair_reader().probability(chin_features(crop, points))


def original_bare_chin(crop: np.ndarray, points: np.ndarray) -> bool:
    """Whether a real photo's chin surely has no beard, goatee or stubble (`chin_hair_probability`,
    `chin_surely_bare`). A microphone, a hand or an open mouth in front of the chin reads as unsure
    (False)."""
    return chin_surely_bare(chin_hair_probability(crop, points))


def chin_surely_bare(chin_hair: float) -> bool:
    """Whether a `chin_hair_probability` reads the chin as surely bare (`CHIN_BARE_PROBABILITY`)."""
    return chin_hair < CHIN_BARE_PROBABILITY
