"""FusionAnonymizer: the shipped CPU default (DESIGN.md §6) — GIE renders a keyed dummy identity
at the original's pose and expression, and geometric fusion lays it onto the original crop.

    e_id = E_fr(X);  V = codec.encode(e_id, secret)            (carried by the pipeline's carriers)
    for k in candidates:  d_k = f_dummy(z(key, salt, face, k));  Y_k = G(spread(f_mlp(d_k, geo₀(X))))
                          F_k = fuse(Y_k onto X)                 (mesh alignment, colour, mask)
    keep the F_k that E_fr (and a second recogniser, when set) finds least like X (the paper's
    away-from-original term, at inference) among those whose apparent gender and age match X's
    (attribute estimator, when given)
    recover: Ŷ = fuse(G(f_mlp(e_id', geo₀(Y))) onto Y)

geo₀ is the geometry with the identity shape coefficients set to the average face: the original's
facial proportions carry identity (DESIGN.md §6 measured it), the rendered face keeps its own.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from g2face.align import face_mask, head_mask
from g2face.models.base import AnonymizedFaces, Fallback, encode_identities
from g2face.models.classic import stronger_filter
from g2face.models.fusion import (
    CHIN_TEXTURE_EDGE,
    FACIAL_HAIR_BARE_ORIGINAL,
    FACIAL_HAIR_EDGE,
    FACIAL_HAIR_GAIN_EDGE,
    FACIAL_HAIR_SURE_ORIGINAL,
    SUNGLASSES_EYES,
    SUNGLASSES_EYES_FAINT,
    SUNGLASSES_EYES_TINTED,
    UNDER_EYE_DIMMED_BY,
    UNDER_EYE_TINTED,
    FusedFace,
    FusionSettings,
    chin_texture,
    eye_region_masks,
    face_region_mask,
    facial_hair_score,
    fit_render_to_original,
    fuse_face,
    lens_kind,
    sunglasses_mask,
    sunglasses_score,
    tint_lenses,
    tinted_lens_mask,
    under_eye_shade,
    upper_cheek_squares,
    upper_lip_box,
)
from g2face.models.gie import GIE, SMILE_BLENDSHAPES, ExpressionCorrection, PoseCorrection
from g2face.models.readers import (
    CHIN_HAIR_LIKELY_PROBABILITY,
    candidate_glasses,
    chin_hair_probability,
    chin_surely_bare,
    descriptor_tone,
    original_glasses,
)
from g2face.nn.crops import at_source_resolution, crops_to_tensor, tensor_to_crops
from g2face.payload import PayloadCodec, Secret
from g2face.priors.attributes import AttributeEstimator
from g2face.priors.base import GenerativePrior, Geometry, GeometryEncoder, IdentityEncoder
from g2face.priors.mediapipe_geometry import BLENDSHAPE_NAMES
from g2face.priors.skin_tone import skin_tone_ita

IDENTITY_JUDGES = {"sface": (0.0814, 0.0883), "dlib-resnet": (0.8347, 0.0355)}
"""Mean and standard deviation of each recogniser's cosine between two different people: 179,700
pairs of 600 LFW photos, one per person (aligned crops). They put one recogniser's cosine in
another's units."""
SECOND_JUDGES = tuple(sorted(set(IDENTITY_JUDGES) - {"sface"}))
"""The recognisers `CandidateSettings.second_judge` may name (SFace is always the first)."""


def in_sface_units(cosine: Tensor, judge: str) -> Tensor:
    """A recogniser's cosine as the SFace cosine as many impostor standard deviations above the
    impostor mean."""
    mean, std = IDENTITY_JUDGES[judge]
    sface_mean, sface_std = IDENTITY_JUDGES["sface"]
    return sface_mean + sface_std * (cosine - mean) / std


@dataclass(frozen=True)
class CandidateSettings:
    """How dummies are chosen among keyed candidates."""

    count: int = 4
    """Candidates rendered per round; the one least similar to the original (after fusion) is kept.
    (The shipped g2face-lite stores 2 per round, up to 2 rounds: on 32 LFW faces the same FaceNet
    anonymity as 4 x 2 with half the renders, scripts/study_candidate_order.py.)"""
    max_similarity: float = 0.3
    """A fused candidate whose identity cosine to the original exceeds this is rejected; while every
    candidate is rejected, `count` more are drawn (up to `max_rounds` rounds)."""
    max_rounds: int = 2
    attribute_rounds: int = 2
    """Rounds drawn beyond `max_rounds`, one at a time, while the face kept would still lose the
    original's apparent gender or age or add an accessory (`CandidateScore.keeps_attributes`):
    the only candidates different enough were a woman for a man or a child for a young man."""
    gender_weight: float = 1.0
    """Penalty per unit of |P(male) difference| between a candidate and the original."""
    gender_margin: float = 0.45
    """A candidate counts as surely of the original's apparent gender (`surely_same_gender`)
    when its P(male) is this far from 0.5 on the original's side, or at least as far as the
    original's own. Another estimator agreed with the chooser's reading of a fused candidate in 100 %
    of 250 LFW candidates at P(male) >= 0.99, 88 % at 0.9-0.99 and about half at 0.5-0.9. The
    shipped file sets 0.48 (session 20, with the gender probe: CelebA wrn gender kept 0.920 ->
    0.927, LFW unchanged at 0.960, anonymity and time unchanged on 150 pairs each). The probe
    also aims dummies at least this far to the original's side (`sure_gender_target`)."""
    age_weight: float = 0.02
    """Penalty per year of age difference beyond `age_tolerance`."""
    age_tolerance: float = 4.0
    max_age_gap: float = 10.0
    """A candidate further than this from the original's apparent age is not acceptable."""
    steer: float = 0.0
    """With a probe: each candidate's dummy identity is moved this fraction of the way (the
    smallest move, along the probe's rows) to where the probe predicts the original's apparent
    gender, age and glasses (`FusionAnonymizer.steer_dummies`); 0 leaves dummies as drawn."""
    glasses_weight: float = 0.5
    """With a probe that predicts glasses: penalty per unit of |predicted glasses (0..1) - whether
    the original wears them| when the keyed pool is ranked (no term when unsure, see
    `original_glasses`), so an original's glasses are kept and none are added without rendering
    candidates that would be passed over."""
    facial_hair_weight: float = 0.5
    """With a probe that predicts facial hair: penalty per unit of (1 - predicted facial hair) when
    the original surely has a moustache or beard (`original_facial_hair`); a clean-shaven
    original's pool is not ranked away from it (`probe_targets` says why)."""
    skin_tone_weight: float = 0.0
    """With a probe that predicts the render's skin tone and dlib as the second judge: penalty per
    degree of |predicted tone - the original's| when the keyed pool is ranked (and the tone a
    steered dummy is moved to), so a dark-skinned original's dummies are drawn among dark-skinned
    renders: the colour transfer matches the tone, but the face's features come with the dummy
    (Serena Williams' and Reggie Miller's fakes read as another ancestry). Both tones are read from
    dlib's descriptor (`readers.descriptor_tone`), the original's photo ITA following its light.
    0: neither ranked nor steered by it."""
    skin_tone_tolerance: float = 0.0
    """Degrees of predicted skin tone either side of the original's within which a dummy is neither
    ranked down nor steered by tone: only dummies further off are moved, to the band's edge. Pinning
    every dummy to the original's tone took away what told two keys' fakes apart (LFW, 150 pairs,
    tone steered exactly: two keys' fakes matched on 0.707 → 0.800 of faces, 94 → 106 of the 132
    light-skinned ones). The shipped file sets 8 (about one deviation of the dummies' own tones),
    so a light-skinned original's dummies keep their spread and a dark-skinned one's are drawn
    dark."""
    age_stretch: float = 0.0
    """The probe's age target (for ranking the pool and steering) is the original's apparent age
    moved this fraction further from `AGE_PIVOT` (`probe_age_target`). Fused fakes come out
    compressed towards young adulthood: on 120 LFW faces a candidate's apparent age was
    5.9 + 0.76 × the original's (dlib, fused preview), i.e. about 7 years young at 55, so older
    originals need an older target; 0 aims at the original's age itself. The shipped file sets 0.6,
    where those candidates' mean dlib age gap to the original came to zero
    (scripts/study_age_stretch.py)."""
    second_judge: str | None = None
    """A second recogniser the search weighs with SFace (`IDENTITY_JUDGES`): candidates are ranked
    by SFace's cosine plus how much more alike the second finds them than two strangers
    (`CandidateScore.ranking_similarity`), so the fake kept looks like someone else to two
    recognisers of different families and training data, not only to the one it is chosen with.
    The similarity bar stays SFace's. None: SFace alone."""
    neutral_round: bool = True
    """When the face kept after every round (`max_rounds` + `attribute_rounds`) is still not surely
    of the original's apparent gender, one more round renders the next `count` candidates with
    f_mlp given GIE's mean expression (`FusionSettings.expression_input` 0 for them; the smile,
    lids and mouth still follow the original's). f_mlp learnt expression and apparent gender
    together: on LFW pair 102 (a man speaking on the phone) every dummy steered male rendered as a
    woman at his blendshapes and 7 of 8 as men at zero (session 44). A dummy kept from that round
    is rendered so on a video track's later frames too (`FusionAnonymizer._neutral_seeds`)."""
    away_steps: int = 0
    """When the face kept is still more like the original than `max_similarity` (SFace, after
    fusion), this many Adam steps move its W+ away from the original's identity
    (`FusionAnonymizer._push_away`: SFace on the render laid onto the original crop, with the
    attribute probe's directions and the render's landmarks and expression held); the result is
    kept if, fused and scored again, it is less like the original and keeps what the chosen face
    kept. 0: no push."""
    away_lr: float = 0.02
    push_above: float | None = None
    """The similarity above which the kept face is pushed (`away_steps`); None: `max_similarity`.
    A video track, whose one dummy is seen at many poses, pushes every dummy (a bar below -1)."""
    spread: float = 1.0
    """A dummy's W+ is taken this many times as far from the average identity's W+ (at the same
    geometry) as f_mlp puts it. f_mlp regresses W+ with a squared error, which pulls its output
    towards the mean face: at 1, two dummies at one pose look alike (FaceNet cos 0.36 between two
    keyed dummies of a face); > 1 restores the spread of real identities. Recovery renders the
    decoded identity unscaled."""

    def __post_init__(self) -> None:
        if self.count < 1 or self.max_rounds < 1 or self.attribute_rounds < 0:
            raise ValueError("count and max_rounds must be >= 1, attribute_rounds >= 0")
        if not 0 <= self.steer <= 2:
            raise ValueError(f"steer must be in [0, 2], got {self.steer}")
        if not 0 <= self.gender_margin < 0.5:
            raise ValueError(f"gender_margin must be in [0, 0.5), got {self.gender_margin}")
        if not 0 <= self.age_stretch <= 1:
            raise ValueError(f"age_stretch must be in [0, 1], got {self.age_stretch}")
        if self.skin_tone_tolerance < 0:
            raise ValueError(f"skin_tone_tolerance must be >= 0 degrees, got {self.skin_tone_tolerance}")
        if self.second_judge is not None and self.second_judge not in SECOND_JUDGES:
            raise ValueError(f"unknown second_judge {self.second_judge!r}; known: {', '.join(SECOND_JUDGES)}")
        if self.away_steps < 0 or self.away_lr <= 0:
            raise ValueError("away_steps must be >= 0 and away_lr > 0")
        if not 0 < self.spread <= 4:
            raise ValueError(f"spread must be in (0, 4], got {self.spread}")


@dataclass(frozen=True)
class CandidateScore:
    similarity: float  # SFace cosine to the original (lower = more anonymous)
    gender_gap: float = 0.0  # |P(male) candidate - P(male) original|
    age_gap: float = 0.0  # |age candidate - age original|, years
    same_gender: bool = True  # both on the same side of P(male) = 0.5
    sure_gender: bool = True  # P(male) clearly on the original's side (`surely_same_gender`)
    male_probability: float | None = None  # the candidate's own estimates (for the report)
    age: float | None = None
    adds_glasses: bool = False  # glasses the original lacks, or dark lenses over its clear ones
    loses_glasses: bool = False  # the original wears glasses and the fake does not
    adds_facial_hair: bool = False  # the fake has a moustache or beard the original does not
    loses_facial_hair: bool = False  # the original has one and the fake does not
    second_similarity: float | None = None  # the second judge's cosine in SFace units (`in_sface_units`)

    @property
    def ranking_similarity(self) -> float:
        """What candidates are ranked by: SFace's cosine, plus (with a second judge) how far above
        two strangers' the second judge's cosine is, in SFace units. (The larger of the two let
        SFace decide nearly always: the second judge puts fused fakes about one impostor deviation
        above strangers, SFace about three; their mean let more candidates pass SFace's bar, so
        fewer took the whole-region replacement and FaceNet found the fakes closer: 40 LFW faces,
        mean cosine 0.367 -> 0.379.)"""
        if self.second_similarity is None:
            return self.similarity
        return self.similarity + self.second_similarity - IDENTITY_JUDGES["sface"][0]

    @property
    def surely_same_gender(self) -> bool:
        return self.same_gender and self.sure_gender

    @property
    def adds_accessory(self) -> bool:
        """The fake brings glasses or facial hair the original lacks."""
        return self.accessories_added > 0

    @property
    def accessories_added(self) -> int:
        """How many of glasses and facial hair the fake brings that the original lacks."""
        return int(self.adds_glasses) + int(self.adds_facial_hair)

    @property
    def accessories_lost(self) -> int:
        """How many of the original's glasses and facial hair the fake lacks."""
        return int(self.loses_glasses) + int(self.loses_facial_hair)

    def cost(self, settings: CandidateSettings) -> float:
        age_excess = max(0.0, self.age_gap - settings.age_tolerance)
        return (
            self.ranking_similarity
            + settings.gender_weight * self.gender_gap
            + settings.age_weight * age_excess
        )

    def keeps_attributes(self, settings: CandidateSettings) -> bool:
        """Of the same apparent gender and about its age, and no glasses or facial hair the
        original lacks."""
        return (
            # Same side, not a gap under 0.5: an original at 0.6 must not accept a candidate at 0.3;
            # and clearly: a fake the chooser reads at 0.7 male is read female by others half the time.
            self.surely_same_gender and self.age_gap <= settings.max_age_gap and not self.adds_accessory
        )

    def acceptable(self, settings: CandidateSettings) -> bool:
        """Different enough from the original and keeps its attributes (`keeps_attributes`)."""
        return self.similarity <= settings.max_similarity and self.keeps_attributes(settings)

    def shortfalls(self, settings: CandidateSettings) -> tuple[str, ...]:
        """What a kept candidate misses of `acceptable`, in words (`AnonymizedFaces.shortfalls`);
        attributes only where they were read (`--attributes keep`). A gender read on the same side
        but not surely is not listed: other estimators read such fakes either way."""
        found = []
        if self.similarity > settings.max_similarity:
            found.append(
                f"identity similarity {self.similarity:.2f} above the bar of {settings.max_similarity:.2f}"
            )
        if self.male_probability is not None:
            if not self.same_gender:
                found.append("apparent gender changed")
            if self.age_gap > settings.max_age_gap:
                found.append(f"apparent age {self.age_gap:.0f} years off")
            found += [
                words
                for flag, words in (
                    (self.adds_glasses, "glasses added"),
                    (self.loses_glasses, "glasses lost"),
                    (self.adds_facial_hair, "facial hair added"),
                    (self.loses_facial_hair, "facial hair lost"),
                )
                if flag
            ]
        return tuple(found)


class ApparentAttributes(NamedTuple):
    """What an original face shows, as the anonymizer reads it: P(male) and age from the attribute
    estimator, glasses (`original_glasses`) and facial hair (`original_facial_hair`), each of the
    last two None when unsure (then neither kept nor avoided)."""

    male: float
    age: float
    glasses: bool | None = None
    facial_hair: bool | None = None
    skin_tone: float | None = None
    """Cheek ITA in degrees (`priors.skin_tone.skin_tone_ita`); None for a black-and-white photo."""
    bare_chin: bool = False
    """The chin surely has no beard (`original_bare_chin`), so the fake must not bring one; False
    when unsure too (then a beard is neither kept nor avoided on the chin)."""
    upper_lip_score: float | None = None
    """The original's `facial_hair_score`: a fake of a clean-shaven face whose own exceeds it by
    `FACIAL_HAIR_GAIN_EDGE` has grown a moustache."""
    descriptor_tone: float | None = None
    """The skin tone read from the original's dlib descriptor (`readers.descriptor_tone`, degrees
    of whole-face ITA under ordinary light), what the probe's skin-tone row aims dummies at; None
    without dlib as the second judge."""


def cheek_tone(crop: np.ndarray, unit_points: np.ndarray) -> float | None:
    """Cheek ITA in degrees of a uint8 RGB crop whose MediaPipe mesh is `unit_points` (unit crop
    coordinates); None for a colourless photo or a face whose cheeks fall outside the crop."""
    try:
        tone = skin_tone_ita(crop, unit_points)
    except ValueError:  # fewer than 10 cheek pixels
        return None
    return None if math.isnan(tone) else tone


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def original_facial_hair(
    score: float, male_probability: float, chin_hair: float | None = None
) -> bool | None:
    """Whether a real photo wears a moustache or beard by its `facial_hair_score`: False (a fake
    must not bring one), True (the fake should keep it) or None (unsure: neither). A face that
    looks female counts as without: its fake is drawn female, and a dark upper lip there is
    lipstick's edge or shadow far more often than hair. A lip read bare over a chin whose
    `chin_hair` (`readers.chin_hair_probability`, when given) reads hair as likely
    (`CHIN_HAIR_LIKELY_PROBABILITY`) is unsure: light facial hair is no darker than the cheeks."""
    if male_probability < 0.5:
        return False
    if score < FACIAL_HAIR_BARE_ORIGINAL:
        return None if chin_hair is not None and chin_hair >= CHIN_HAIR_LIKELY_PROBABILITY else False
    return True if score >= FACIAL_HAIR_SURE_ORIGINAL else None


def surely_same_gender(candidate_male: float, original_male: float, margin: float) -> bool:
    """Whether a candidate's P(male) is on the original's side of 0.5 and at least `margin` from it
    (or as far as the original's own, when that is less): `CandidateSettings.gender_margin`."""
    same = (candidate_male >= 0.5) == (original_male >= 0.5)
    # (less a rounding step: an estimator's float32 0.7 must count as clearly as the original's 0.7)
    return same and abs(candidate_male - 0.5) >= min(margin, abs(original_male - 0.5)) - 1e-6


def choose_candidate(scores: list[CandidateScore], settings: CandidateSettings) -> int:
    """The index of the candidate to keep. Anonymity first: among candidates surely of the
    original's apparent gender and about its age the least similar; else among those different
    enough the one closest in attributes, surely of the original's apparent gender first, then of
    it at all; else the least similar of that gender, surely first (of all, when none is; the
    whole-region fallback then lowers the similarity). (Picking the
    closest in attributes among acceptable ones raised FaceNet's mean cosine to the original person
    from 0.24 to 0.33 on LFW.) No added glasses or facial hair at any tier, unless every candidate
    brings some, or none without them is surely of the original's apparent gender and within
    `max_age_gap` of its age: then those that are (failing that, those surely of its gender) join
    them, those that bring the fewest (a man's fake with a beard he lacks before a woman's: CelebA,
    session 27; a young man's with a moustache before a child's: session 34);
    an original's glasses and facial hair are kept where an acceptable (or, failing that,
    different-enough) candidate has them (fewest lost first). "Similar" is the bar's SFace cosine
    for what passes it and `ranking_similarity` (both judges) for what is least so."""
    indices = range(len(scores))

    def fewest_added(pool: list[int]) -> list[int]:
        # where every candidate brings something, one that brings glasses *and* a moustache is
        # not chosen over one that brings a moustache only (LFW, session 30: every candidate for a
        # clean-shaven man read as adding facial hair, and the least similar added glasses too)
        least = min((scores[i].accessories_added for i in pool), default=0)
        return [i for i in pool if scores[i].accessories_added == least]

    def keeps_person(i: int) -> bool:  # surely the original's apparent gender, and about its age
        return scores[i].surely_same_gender and scores[i].age_gap <= settings.max_age_gap

    eligible = [i for i in indices if not scores[i].adds_accessory]
    adding = [i for i in indices if scores[i].adds_accessory]
    if not any(keeps_person(i) for i in eligible):
        # The apparent person before the accessories: a young man's candidates without an added
        # moustache were all children (a wild photo; a child's face has no facial hair to add),
        # and a 6-year-old's face was chosen over a 24-year-old's with a moustache.
        joining = [i for i in adding if keeps_person(i)]
        if not joining and not any(scores[i].surely_same_gender for i in eligible):
            joining = [i for i in adding if scores[i].surely_same_gender]
        eligible += fewest_added(joining)
    eligible = eligible or fewest_added(list(indices))
    acceptable = [i for i in eligible if scores[i].acceptable(settings)]
    if acceptable:
        return min(acceptable, key=lambda i: (scores[i].accessories_lost, scores[i].ranking_similarity))
    different = [i for i in eligible if scores[i].similarity <= settings.max_similarity]
    if different:
        return min(
            different,
            key=lambda i: (
                not scores[i].surely_same_gender,
                not scores[i].same_gender,
                scores[i].accessories_lost,
                scores[i].cost(settings),
            ),
        )
    sure = [i for i in eligible if scores[i].surely_same_gender]
    same_gender = [i for i in eligible if scores[i].same_gender]
    return min(sure or same_gender or eligible, key=lambda i: scores[i].ranking_similarity)


TURNED_FILTER_LEVELS = 3
"""How many times a turned face's classic filter may be strengthened (`FusionAnonymizer._turned_face`):
a blur's σ from a tenth of the face width up to 0.8 of it."""
TURNED_HEAD_LEVEL = TURNED_FILTER_LEVELS + 1
"""The turned-face fallback's last resort: the strongest filter over the whole crop (`align.head_mask`:
hair and outline too), when no strength over the face region alone passes the bar."""


def _strength_note(level: int) -> str:
    """How strongly `FusionAnonymizer._turned_face` had to filter, for a fallback's reason."""
    if level == TURNED_HEAD_LEVEL:
        return "; blurred with its hair and outline to hide it"
    return f"; filtered {2**level}x as strongly to hide it" if level else ""


REFINEMENTS_KEPT = 64
"""Identities whose refinement (`FusionAnonymizer.render_identities`) is remembered for reuse (and
dummy seeds whose push or neutral rendering is)."""


def _keep_recent(cache: OrderedDict, key, value) -> None:
    """`cache[key] = value` as the most recently used entry, the oldest dropped beyond
    `REFINEMENTS_KEPT`."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > REFINEMENTS_KEPT:
        cache.popitem(last=False)


WHOLE_REGION_TRIES = 2
"""When no candidate is acceptable, at most this many of those that keep the attributes (least
similar first) are also tried with the whole face region replaced, besides the chosen one."""

PROBE_KEYS = ("attribute_probe.weight", "attribute_probe.bias")
"""Tensors of the optional attribute probe in a fusion model file (scripts/fit_attribute_probe.py)."""
GENDER_PROBE_KEYS = ("gender_probe.weight", "gender_probe.bias")
"""Tensors of the optional gender probe on the second judge's descriptor (scripts/study_gender_reading.py
--write-probe): with it, apparent gender is read by Cydral's network and the probe together
(`priors.attributes.ProbedGenderEstimator`)."""
PROBE_ROWS = ("gender", "age", "glasses", "facial_hair", "skin_tone")
"""The probe's outputs, in order: gender logit, age in years, glasses and facial hair (0/1
regressed), and the skin tone of the render before any colour transfer as its dlib descriptor reads
it (`readers.descriptor_tone`: the dummy's own skin tone, which goes with its apparent ancestry).
A probe may have only the first two to four."""
SKIN_TONE_ROW = PROBE_ROWS.index("skin_tone")

PROBE_POOL = 64
"""With a probe, this many keyed dummies are drawn (cheap: f_dummy only; more if a search may
render more) and the ones whose predicted attributes are closest to the original's are rendered."""


AGE_PIVOT = 25.0
"""Years: the apparent age the fused fakes' compression leaves in place (the fixed point of the fit
in `CandidateSettings.age_stretch`: 5.9 / (1 - 0.76))."""


def probe_age_target(age: float, stretch: float) -> float:
    """The age the probe should aim a dummy at for an original of apparent `age`."""
    if stretch == 0:  # exactly the age: a model file without a stretch renders as it did
        return age
    return AGE_PIVOT + (1 + stretch) * (age - AGE_PIVOT)


def sure_gender_target(male_probability: float, margin: float) -> float:
    """The P(male) a dummy is steered and ranked towards: on the original's side of 0.5 and at least
    `margin` from it. Aiming at the original's own reading when it is unsure (Grace Hopper, 0.38)
    drew dummies the probe itself called ambiguous, and renders of those read male: 9 of her 10
    candidates did. An unsure original is still a woman or a man to the chooser (`same_gender`)."""
    side = 1.0 if male_probability >= 0.5 else -1.0
    return 0.5 + side * max(abs(male_probability - 0.5), margin)


def probe_targets(
    reference: ApparentAttributes,
    rows: int,
    age_stretch: float = 0.0,
    skin_tone: bool = False,
    gender_margin: float = 0.0,
) -> dict[int, float]:
    """The attribute probe's rows (of its first `rows`, `PROBE_ROWS`) the original's attributes give
    a target for, and those targets: gender logit and age (`probe_age_target`) always, glasses
    where known, facial hair only where the original has it. Steering or ranking every
    clean-shaven original's dummies away from facial hair made them younger (in the dummies, facial
    hair goes with age more than the probe's age row captures; 40 LFW pairs, same seeds: wrn age
    error 7.8 → 9.2 years steered and ranked, 8.6 ranked only, 8.1 neither); the search passes over
    fakes that add facial hair instead."""
    male = min(max(sure_gender_target(reference.male, gender_margin), 1e-3), 1 - 1e-3)
    targets = {0: math.log(male / (1 - male)), 1: probe_age_target(reference.age, age_stretch)}
    if reference.glasses is not None:
        targets[2] = float(reference.glasses)
    if reference.facial_hair:
        targets[3] = 1.0
    if skin_tone and reference.descriptor_tone is not None:
        # the tone read from the descriptor, not the photo's cheeks: those follow its light
        targets[SKIN_TONE_ROW] = reference.descriptor_tone
    return {row: t for row, t in targets.items() if row < rows}


EXPRESSION_COLUMNS = slice(-3 - len(BLENDSHAPE_NAMES), -3)
"""The blendshapes' columns in a geometry vector [shape ⊕ expression ⊕ pose (3)], and in GIE's
input [identity ⊕ geometry vector], which ends the same way."""


def smile_of(geometry_vector: Tensor) -> Tensor:
    """The smile [B] (`models.gie.SMILE_BLENDSHAPES`, averaged) in geometry vectors [B, G]."""
    return geometry_vector[:, EXPRESSION_COLUMNS][:, list(SMILE_BLENDSHAPES)].mean(1)


def _probe_delta(
    probe: nn.Linear,
    identities: Tensor,
    targets: dict[int, float],
    tolerances: dict[int, float] | None = None,
) -> Tensor:
    """The smallest change δ [N, D] per identity [N, D] that brings the attribute probe's rows named
    in `targets` (row -> target) to those targets: δ = Pᵀ (P Pᵀ)⁻¹ (target - (P·d + b)), along those
    rows only. A row with a tolerance (row -> how far off may stay) is held where it is inside
    target ± tolerance and brought to the band's nearer edge from outside it."""
    used = list(targets)
    rows = probe.weight[used].to(identities)
    target = torch.tensor(list(targets.values()), dtype=identities.dtype, device=identities.device)
    error = target - probe(identities)[:, used]  # [N, rows used]
    for column, row in enumerate(used):
        slack = (tolerances or {}).get(row, 0.0)
        if slack > 0:
            off = error[:, column]
            error[:, column] = torch.sign(off) * (off.abs() - slack).clamp(min=0)
    return torch.linalg.solve(rows @ rows.T, error.T).T @ rows


@dataclass(frozen=True)
class _RefineScenes:
    """Where renders are laid for `FusionAnonymizer._refine`: per face, the `grid_sample` grid of
    its similarity fit onto its crop [N, S, S, 2], the fused region [N, 1, S, S], the crop
    itself [N, 3, S, S] in [-1, 1] and the photo pixels it spans (`align.crop_source_width`;
    None: as many as the crop)."""

    grids: Tensor
    weights: Tensor
    backgrounds: Tensor
    widths: list[float | None]


class _GeometryHold:
    """What keeps an optimised render where it started: the L1 change of its MediaPipe landmarks
    (weighted 10) and blendshapes from those of `start` [N, 3, S, S] (`_refine`, `_push_away`)."""

    def __init__(self, geometry: GeometryEncoder, start: Tensor):
        self.geometry = geometry
        found = geometry(start)
        self.landmarks, self.expression = found.landmarks.detach()[..., :2], found.expression.detach()

    def __call__(self, image: Tensor) -> Tensor:
        found = self.geometry(image)
        return (
            10 * (found.landmarks[..., :2] - self.landmarks).abs().mean()
            + (found.expression - self.expression).abs().mean()
        )


PUSH_DETAIL_KEPT = 0.8
"""A push step whose render keeps less than this fraction of the start render's facial detail
(`face_detail`) is not kept: lowering a recogniser's cosine by washing the features out is not a
different person (LFW, session 15: a push that kept 0.5 of it left a featureless blur)."""

PUSH_EYES_DARKER_MAX = 0.05
"""A push step whose render's eye region is darker against the upper cheeks (`_eye_darkness`) by
more than this, in either eye, than the start render's is not kept: hiding the eyes behind darker
lenses or shadow is the quickest way away from a recogniser, and Adam's first step, taken before
the push's own eye term can act, did just that (LFW, session 47: three clear-glasses wearers'
pushed fakes in tinted lenses, the first step's render +0.11 darker)."""
PUSH_EYES_WEIGHT = 10.0
"""Weight of the push's loss term on the eyes darkening against the cheeks (`_push_away`)."""


def face_detail(crop: np.ndarray, points: np.ndarray) -> float:
    """Mean |Laplacian| of the grey crop (uint8 RGB, lightly smoothed) over the central 60 % of its
    face mesh's bounding box (`points`, pixels): how much eye, brow, nose and mouth detail shows."""
    grey = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    (x0, y0), (x1, y1) = points[:, :2].min(0), points[:, :2].max(0)
    dx, dy = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
    box = grey[max(int(y0 + dy), 0) : max(int(y1 - dy), 0), max(int(x0 + dx), 0) : max(int(x1 - dx), 0)]
    return float(np.abs(cv2.Laplacian(box, cv2.CV_32F)).mean()) if box.size else 0.0


def _similarity_grid(matrix: np.ndarray, size: int) -> Tensor:
    """The `grid_sample` grid [1, S, S, 2] that warps an S×S image by a 2×3 pixel-coordinate
    matrix as `cv2.warpAffine` does (each output pixel reads the inverse-mapped source point)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    source = inverse @ np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)])
    grid = (2 * source + 1) / size - 1  # pixel centres to align_corners=False coordinates
    return torch.from_numpy(grid.T.reshape(1, size, size, 2).astype(np.float32))


def _upper_lip_and_cheeks(points: np.ndarray, size: int, device) -> tuple[Tensor, Tensor]:
    """Boolean masks [S, S] of the band between nose and upper lip and of the two upper-cheek
    squares, as `facial_hair_score` takes them, for a face whose mesh is `points` (pixels)."""
    ys, xs = np.mgrid[0:size, 0:size]

    def box(x0, x1, y0, y1):
        return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)

    band = box(*upper_lip_box(points))
    cheeks = np.zeros_like(band)
    for square in upper_cheek_squares(points):
        cheeks |= box(*square)
    return torch.from_numpy(band).to(device), torch.from_numpy(cheeks).to(device)


def _upper_lip_darkness(image: Tensor, lip: Tensor, cheeks: Tensor) -> Tensor:
    """A differentiable stand-in for `facial_hair_score` of a render [1, 3, S, S] in [-1, 1]: how
    much darker (luma) and less colourful (max - min of RGB) the upper lip is than the cheeks,
    means instead of medians (0 when either region is empty)."""
    if not lip.any() or not cheeks.any():
        return image.new_zeros(())
    rgb = (image[0] + 1) / 2
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    colour = rgb.amax(0) - rgb.amin(0)
    darker = 1 - luma[lip].mean() / luma[cheeks].mean().clamp_min(1e-3)
    paler = 1 - colour[lip].mean() / colour[cheeks].mean().clamp_min(1e-3)
    return darker + paler


def _eye_regions(points: np.ndarray, size: int, device) -> Tensor:
    """Boolean masks [2, S, S] of the two eyes' regions (`eye_region_masks`) of a mesh in pixels."""
    return torch.from_numpy(np.stack(eye_region_masks(points, size))).to(device)


def _eye_darkness(image: Tensor, eyes: Tensor, cheeks: Tensor) -> Tensor:
    """A differentiable stand-in for `sunglasses_score` of a render [1, 3, S, S] in [-1, 1], per
    eye [2]: how much darker (luma) each eye's region is than the upper cheeks (0 where either
    region is empty)."""
    if not cheeks.any():
        return image.new_zeros(len(eyes))
    rgb = (image[0] + 1) / 2
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    skin = luma[cheeks].mean().clamp_min(1e-3)
    return torch.stack([1 - luma[eye].mean() / skin if eye.any() else luma.new_zeros(()) for eye in eyes])


def candidate_seed(dummy_seed: int, index: int) -> int:
    """The seed of candidate `index` of a face whose keyed dummy seed is `dummy_seed`; candidate 0
    is the dummy seed itself."""
    if index == 0:
        return dummy_seed
    digest = hashlib.blake2b(f"{dummy_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _no_worse_in_attributes(
    pushed: CandidateScore, start: CandidateScore, settings: CandidateSettings
) -> bool:
    """Whether a pushed face keeps whatever its starting face kept of the original's attributes:
    the apparent gender (surely, where the start was sure), an age within `max_age_gap` (or no
    further off than the start), no accessory added that the start lacked, none more lost. (A push
    from a face that already missed the age must not make it a child: LFW, session 15.)"""
    return (
        (pushed.surely_same_gender or not start.surely_same_gender)
        and (pushed.same_gender or not start.same_gender)
        and pushed.age_gap <= max(start.age_gap, settings.max_age_gap)
        and (start.adds_glasses or not pushed.adds_glasses)
        and (start.adds_facial_hair or not pushed.adds_facial_hair)
        and pushed.accessories_lost <= start.accessories_lost
    )


_Kept = tuple[CandidateScore, FusedFace, int, bool]
"""A search's result: (score, fused face, dummy seed, whole region replaced)."""


LIGHT_EYES_ORIGINAL = 0.5
"""`sunglasses_score` below which an original shows its lids and whites light over at least one eye:
it wears clear glasses or none, so a candidate in dark lenses adds glasses. From 0.5 to
`SUNGLASSES_EYES` tinted glasses, sunglasses read in part and dark-eyed faces mix (12 of 143 CelebA
and 9 of 150 LFW originals of the evaluations, among them a woman in sunglasses at 0.69); their
candidates' lenses are left free."""


class _FaceSearch:
    """The search for one face's dummy (`FusionAnonymizer.anonymize`): keyed candidates rendered in
    rounds, fused and scored; the choice (`choose_candidate`); the whole-region replacement when none
    is acceptable; and, while the choice still loses the original's apparent gender or age,
    up to `CandidateSettings.attribute_rounds` more rounds."""

    def __init__(self, model: FusionAnonymizer, *, seed, original, points, vector, embedding,
                 second_embedding, reference, occluder, dtype, width=None) -> None:  # fmt: skip
        self.model, self.settings, self.seed = model, model.candidates, seed
        self.width = width  # photo pixels the crop spans: candidates are judged as the photo shows them
        self.original, self.points, self.vector = original, points, vector
        self.embedding, self.second_embedding = embedding, second_embedding
        self.reference, self.occluder, self.dtype = reference, occluder, dtype
        self.pool: list[tuple[CandidateScore, FusedFace, int]] = []
        self.renders: dict[int, Tensor] = {}
        self.render_points: dict[int, np.ndarray] = {}
        self.widened: dict[int, tuple[CandidateScore, FusedFace]] = {}  # pool index -> whole-region try
        self.neutral: set[int] = set()  # seeds rendered at GIE's mean expression (`neutral_round`)

    def _expression_input_of(self, seed: int) -> float | None:
        """The `expression_input` `FusionAnonymizer.styles` renders this candidate with (None: the
        model's)."""
        return 0.0 if seed in self.neutral else None

    def _score(self, fused: list[FusedFace]) -> list[CandidateScore]:
        return self.model._scores(
            self.embedding,
            self.reference,
            [f.preview for f in fused],
            self.points,
            self.second_embedding,
            None if self.occluder is None else [f.crop for f in fused],
            self.width,
            # the original's own dark glasses are kept in front of the fake when it wears them
            dark_lenses_added=self.occluder is None
            and self.model.fusion.keep_sunglasses
            and self.original_eyes_light,
            original_under_eye=self.original_under_eye,
        )

    @functools.cached_property
    def original_eyes_light(self) -> bool:
        """Whether the original shows no dark lenses at all (`LIGHT_EYES_ORIGINAL`)."""
        return sunglasses_score(self.original, self.points) < LIGHT_EYES_ORIGINAL

    @functools.cached_property
    def original_under_eye(self) -> float:
        """How light the skin under the original's eyes reads (`under_eye_shade`)."""
        return under_eye_shade(self.original, self.points)

    def _render_round(self, indices: list[int], with_pushes: bool = False, neutral: bool = False) -> None:
        """Render, fuse and score candidates `indices` into the pool; `with_pushes`: each seed with
        the push it got before (`FusionAnonymizer._pushes`) and at the expression it was kept at
        (`_neutral_seeds`), as a video track's later frames are; `neutral`: at GIE's mean
        expression (`CandidateSettings.neutral_round`)."""
        model = self.model
        candidate_seeds = [candidate_seed(self.seed, k) for k in indices]
        if neutral:
            self.neutral.update(candidate_seeds)
        if with_pushes:
            self.neutral.update(s for s in candidate_seeds if s in model._neutral_seeds)
        dummies = model.steer_dummies(model.dummy_identities(candidate_seeds, self.dtype), self.reference)
        # One at a time: a batch of candidates is slower per image on a CPU (its 512x512 feature
        # maps fall out of cache) and multiplies the peak memory.
        # A dummy kept for a video track is rendered with the push it got on its first frame.
        pushes = [model._pushes.get(s) if with_pushes else None for s in candidate_seeds]
        renders = torch.cat(
            [
                model.render_dummies(
                    d[None],
                    self.vector,
                    self.settings.spread,
                    offset=p,
                    expression_input=self._expression_input_of(s),
                )
                for d, p, s in zip(dummies, pushes, candidate_seeds, strict=True)
            ]
        )
        self.renders |= dict(zip(candidate_seeds, renders, strict=True))
        render_points = model.render_points(renders)
        self.render_points |= dict(zip(candidate_seeds, render_points, strict=True))
        fused = model.fuse_renders(
            self.original,
            self.points,
            renders,
            render_points=render_points,
            keep=self.occluder,
            source_width=self.width,
        )
        self.pool.extend(zip(self._score(fused), fused, candidate_seeds, strict=True))

    def _widen(self, j: int) -> tuple[CandidateScore, FusedFace]:
        """Pool candidate `j` fused with the whole face region replaced, and its score (once)."""
        if j not in self.widened:
            seed = self.pool[j][2]
            (wider,) = self.model.fuse_renders(
                self.original,
                self.points,
                self.renders[seed][None],
                dataclasses.replace(self.model.fusion, render_only=False),
                render_points=[self.render_points[seed]],
                keep=self.occluder,
                source_width=self.width,
            )
            self.widened[j] = (self._score([wider])[0], wider)
        return self.widened[j]

    def _choose(self) -> tuple[CandidateScore, FusedFace, int, bool]:
        settings, model = self.settings, self.model
        chosen = choose_candidate([c[0] for c in self.pool], settings)
        score, face, rendered = self.pool[chosen]
        replaced_whole = not model.fusion.render_only
        if not model.fusion.render_only or score.acceptable(settings):
            return score, face, rendered, replaced_whole
        # Too like the original, or unlike it in attributes (the only candidate different enough
        # was a child for a young man): where the render's face is narrower, the original's outline
        # showed through. With the whole region replaced (realism second) the chosen one, or else
        # one of the least similar that keep the attributes, may pass the bar; the first that does
        # is kept.
        tries = [chosen] if score.similarity > settings.max_similarity else []
        keepers = [j for j, c in enumerate(self.pool) if j != chosen and c[0].keeps_attributes(settings)]
        tries += sorted(keepers, key=lambda j: self.pool[j][0].ranking_similarity)[:WHOLE_REGION_TRIES]
        for j in tries:
            rescored, wider = self._widen(j)
            if rescored.acceptable(settings):
                return rescored, wider, self.pool[j][2], True
            if j == chosen and rescored.ranking_similarity < score.ranking_similarity:
                # none may pass: the chosen one at least less like the original
                score, face, replaced_whole = rescored, wider, True
        return score, face, rendered, replaced_whole

    def _pushed(self, score: CandidateScore, face: FusedFace, seed: int, whole: bool):
        """A fused candidate pushed away from the original (`FusionAnonymizer._push_away`): of the
        renders along the push, the least like the original that keeps the attributes `score`
        kept and loses no more accessories (a push can drift the apparent gender or grow a
        moustache: later steps are not always better), as (score, fused face, W+ offset), if it
        is less like the original than `score`; else None."""
        settings, model = self.settings, self.model
        dummy = model.steer_dummies(model.dummy_identities([seed], self.dtype), self.reference)
        wplus = model.styles(dummy, self.vector, settings.spread, self._expression_input_of(seed))
        path, renders = model._push_away(
            wplus, self.original, self.points, self.render_points[seed], face.mask, self.embedding, self.width
        )
        fusion = dataclasses.replace(model.fusion, render_only=False) if whole else model.fusion
        fused = model.fuse_renders(
            self.original, self.points, renders, fusion, keep=self.occluder, source_width=self.width
        )
        points = self.render_points[seed]  # (the push holds the render's landmarks)
        start = self.renders[seed][None]
        start_detail = face_detail(tensor_to_crops(start)[0], points)
        _, cheeks = _upper_lip_and_cheeks(points, model.image_size, renders.device)
        eyes = _eye_regions(points, model.image_size, renders.device)
        start_eyes = _eye_darkness(start, eyes, cheeks)
        # a render washed out or with its eyes hidden is not a different person
        usable = [
            face_detail(crop, points) >= PUSH_DETAIL_KEPT * start_detail
            and float((_eye_darkness(render[None], eyes, cheeks) - start_eyes).max()) <= PUSH_EYES_DARKER_MAX
            for crop, render in zip(tensor_to_crops(renders), renders, strict=True)
        ]
        best = None
        for k, rescored in enumerate(self._score(fused)):
            if (
                usable[k]
                and _no_worse_in_attributes(rescored, score, settings)
                and rescored.ranking_similarity < (score if best is None else best[0]).ranking_similarity
            ):
                best = rescored, fused[k], path[k] - wplus[0]
        return best

    def _push(self, result: _Kept) -> _Kept:
        """The face kept, pushed away from the original (`CandidateSettings.away_steps`) when it is
        still above the similarity bar. When it was kept although it loses the original's apparent
        gender or age (the only candidates different enough did), the least similar candidate
        that keeps them is pushed first, and taken if that brings it under the bar."""
        score, face, seed, whole = result
        settings = self.settings
        if settings.away_steps == 0:
            return result
        if not score.keeps_attributes(settings):
            keepers = [j for j, c in enumerate(self.pool) if c[0].keeps_attributes(settings)]
            if keepers:
                j = min(keepers, key=lambda j: self.pool[j][0].ranking_similarity)
                keeper, keeper_face, keeper_seed = self.pool[j]
                pushed = self._pushed(keeper, keeper_face, keeper_seed, not self.model.fusion.render_only)
                if pushed is not None and pushed[0].acceptable(settings):
                    self.model._remember_push(keeper_seed, pushed[2])
                    return pushed[0], pushed[1], keeper_seed, not self.model.fusion.render_only
        bar = settings.max_similarity if settings.push_above is None else settings.push_above
        if score.similarity <= bar:
            return result
        pushed = self._pushed(score, face, seed, whole)
        if pushed is None:
            return result
        self.model._remember_push(seed, pushed[2])
        return pushed[0], pushed[1], seed, whole

    def run(self, search: bool = True) -> _Kept:
        """(score, fused face, dummy seed, whole region replaced) of the face kept."""
        settings = self.settings
        if not search:
            self._render_round([0], with_pushes=True)
            return self._choose()
        rounds = settings.max_rounds + settings.attribute_rounds
        order = self.model._candidate_order(self.seed, self.reference, self.dtype, rounds + 1)
        for round_ in range(rounds):
            self._render_round(order[round_ * settings.count : (round_ + 1) * settings.count])
            # An original's glasses and facial hair are kept by choosing a fake that has them: while
            # no acceptable one does, the next of the first `max_rounds` rounds is drawn too.
            found = any(c[0].acceptable(settings) and not c[0].accessories_lost for c in self.pool)
            if round_ + 1 < settings.max_rounds and not found:
                continue
            result = self._choose()
            if result[0].keeps_attributes(settings):
                break
        if settings.neutral_round and not result[0].surely_same_gender:
            self._render_round(order[rounds * settings.count : (rounds + 1) * settings.count], neutral=True)
            result = self._choose()
        result = self._push(result)
        if result[2] in self.neutral:
            self.model._remember_neutral(result[2])
        return result


class FusionAnonymizer(nn.Module):
    payload_in_crops = False

    def __init__(
        self,
        gie: GIE,
        generator: GenerativePrior,
        identity: IdentityEncoder,
        geometry: GeometryEncoder,
        codec: PayloadCodec,
        *,
        fusion: FusionSettings | None = None,
        candidates: CandidateSettings | None = None,
        attributes: AttributeEstimator | None = None,
        attribute_probe: nn.Linear | None = None,
        second_identity: IdentityEncoder | None = None,
        pose_correction: PoseCorrection | None = None,
        expression_correction: ExpressionCorrection | None = None,
    ):
        """`attributes`: an apparent age/gender estimator; when given, dummies are chosen to keep
        the original's apparent gender and age (`--attributes keep`). `attribute_probe`: a linear
        map from a dummy identity to the `PROBE_ROWS` of the face GIE renders from it (gender
        logit, age, and where fitted glasses and facial hair), used to draw dummies of the right
        attributes before rendering any."""
        super().__init__()
        if identity.embedding_dim != codec.embedding_dim or identity.embedding_dim != gie.config.identity_dim:
            raise ValueError(
                f"identity dims differ: encoder {identity.embedding_dim}, codec {codec.embedding_dim}, "
                f"GIE {gie.config.identity_dim}"
            )
        self.gie, self.generator, self.identity, self.geometry, self.codec = (
            gie,
            generator,
            identity,
            geometry,
            codec,
        )
        self.fusion = fusion or FusionSettings()
        self.candidates = candidates or CandidateSettings()
        self.attributes = attributes
        self.attribute_probe = attribute_probe if attributes is not None else None
        self.second_identity = second_identity
        self.pose_correction = pose_correction
        self.expression_correction = expression_correction
        # (identity bytes, refine steps) -> the W+ offset its refinement found (`render_identities`)
        self._refinements: OrderedDict[tuple[bytes, int], Tensor] = OrderedDict()
        # identity bytes -> the probe rows and targets `keep_accessories` moves it to
        self._accessories: OrderedDict[bytes, dict[int, float]] = OrderedDict()
        # dummy seed -> the W+ offset its push away from the original found (`_push_away`)
        self._pushes: OrderedDict[int, Tensor] = OrderedDict()
        # dummy seeds kept from a search's neutral round (`CandidateSettings.neutral_round`), in use order
        self._neutral_seeds: OrderedDict[int, None] = OrderedDict()
        # (dummy seeds, geometry vectors [N, G]) -> the vectors the faces are rendered at; None:
        # each face's own (`with_geometry_filter`)
        self.geometry_filter: Callable[[Sequence[int], Tensor], Tensor] | None = None
        self._check_second_judge()
        self.eval()

    def _check_second_judge(self) -> None:
        wanted = self.candidates.second_judge
        if wanted is not None and getattr(self.second_identity, "name", None) != wanted:
            raise ValueError(f"candidates.second_judge is {wanted!r} but no such recogniser was given")

    @property
    def image_size(self) -> int:
        return self.generator.output_resolution

    def with_candidates(self, **changes) -> FusionAnonymizer:
        """This anonymizer with a different candidate search (`CandidateSettings` fields), sharing
        its networks (nothing is copied): e.g. a wider search where it runs once for many frames."""
        view = copy.copy(self)
        view.candidates = dataclasses.replace(self.candidates, **changes)
        view._check_second_judge()
        return view

    def with_fusion(self, **changes) -> FusionAnonymizer:
        """This anonymizer with different `FusionSettings` fields, sharing its networks: e.g. the
        whole region replaced on every frame of a video track that needed it once."""
        view = copy.copy(self)
        view.fusion = dataclasses.replace(self.fusion, **changes)
        return view

    def with_geometry_filter(self, geometry_filter: Callable[[Sequence[int], Tensor], Tensor] | None):
        """This anonymizer rendering each face at `geometry_filter(seeds, vectors)` instead of the
        geometry vector read on its own crop (`geometry_vector`), sharing its networks: a video
        track's expression and pose smoothed over its frames (`video.clips.GeometrySmoother`), keyed
        by the dummy seed each face is given. Placement on the original is unaffected (the fusion
        fits the render to the original's own mesh)."""
        view = copy.copy(self)
        view.geometry_filter = geometry_filter
        return view

    def _device(self) -> torch.device:
        return next(self.gie.parameters()).device

    def geometry_vector(self, geometry: Geometry) -> Tensor:
        """[shape ⊕ expression ⊕ pose] with the shape set to the average face GIE was trained on."""
        n_shape = geometry.shape.shape[1]
        mean_shape = self.gie.style_mlp.input_mean[
            self.gie.config.identity_dim : self.gie.config.identity_dim + n_shape
        ]
        shape = mean_shape.to(geometry.shape).expand_as(geometry.shape)
        return torch.cat([shape, geometry.expression, geometry.pose], dim=1)

    def dummy_identities(self, seeds: list[int], dtype: torch.dtype) -> Tensor:
        """f_dummy of one seeded z per seed (drawn on the CPU: the same on every device)."""
        dim = self.gie.config.z_dim
        z = [torch.randn(dim, generator=torch.Generator().manual_seed(s % 2**63)) for s in seeds]
        return self.gie.dummy_identity(torch.stack(z).to(self._device(), dtype))

    def steer_dummies(self, identities: Tensor, reference) -> Tensor:
        """Dummy identities [N, D] moved `candidates.steer` of the way to the original's apparent
        attributes (`reference`, `ApparentAttributes`; glasses or facial hair None when unsure,
        then not steered) as the attribute probe reads them: the minimum-norm change δ with
        P·(d + δ) + b = target for the probe's rows P (those it has and the original gives a
        target for) and bias b. Only the attributes move: δ lies in the span of those rows, so the
        rest of the identity (what makes two keys different people) is untouched. Measured on 40
        LFW pairs with the same seeds (steer 0 → 1): wrn age error 9.9 → 7.9 years, FaceNet
        anonymity unchanged."""
        if self.candidates.steer == 0 or self.attribute_probe is None or reference is None:
            return identities
        targets = probe_targets(
            ApparentAttributes(*reference),
            len(self.attribute_probe.weight),
            self.candidates.age_stretch,
            skin_tone=self.candidates.skin_tone_weight > 0,
            gender_margin=self.candidates.gender_margin,
        )
        tolerances = {SKIN_TONE_ROW: self.candidates.skin_tone_tolerance}
        delta = _probe_delta(self.attribute_probe, identities, targets, tolerances)
        return identities + self.candidates.steer * delta

    def keep_accessories(self, identities: Tensor, crops: Tensor, points: np.ndarray) -> Tensor:
        """Identities [N, D] to be rendered back into anonymized crops [N, 3, S, S] (mesh `points`
        [N, 478, 2] in pixels), moved along the attribute probe's glasses and facial-hair rows to
        what the crops show: the fake kept the original's glasses and facial hair, so an identity
        rendered there should neither add nor drop them (a recovered face rendered plainly came
        out with glasses its owner never wore: docs/video.md). Unsure readings move nothing; without a
        probe that predicts them the identities are returned as they are."""
        probe = self.attribute_probe
        if probe is None or probe.weight.shape[0] <= 2:
            return identities
        keys = [identity.float().cpu().numpy().tobytes() for identity in identities]
        # The first face an identity is rendered on decides (a video track's frames then render
        # one identity, and its refinement is found once).
        new = [i for i, key in enumerate(keys) if key not in self._accessories and keys.index(key) == i]
        if new:
            faces = tensor_to_crops(crops[new])
            male = [None] * len(new)
            if self.attributes is not None and probe.weight.shape[0] > 3:
                male = self.attributes(crops[new]).male_probability.tolist()
            for i, face, p in zip(new, faces, male, strict=True):
                wanted = {}
                glasses = original_glasses(face, points[i])
                if glasses is not None:
                    wanted[2] = float(glasses)
                if p is not None:
                    lip, chin = facial_hair_score(face, points[i]), chin_hair_probability(face, points[i])
                    hair = original_facial_hair(lip, float(p), chin)
                    if hair is not None:
                        wanted[3] = float(hair)
                self._accessories[keys[i]] = wanted
        moved = identities.clone()
        for i, key in enumerate(keys):
            if self._accessories[key]:  # (nothing known: nothing moves)
                moved[i : i + 1] += _probe_delta(probe, identities[i : i + 1], self._accessories[key])
        for key in dict.fromkeys(keys):
            _keep_recent(self._accessories, key, self._accessories[key])
        return moved

    def render_dummies(
        self,
        identities: Tensor,
        geometry_vector: Tensor,
        spread: float = 1.0,
        offset: Tensor | None = None,
        expression_input: float | None = None,
    ) -> Tensor:
        """Identities [N, D] rendered at one geometry [1, G] or one each [N, G]; `spread` scales
        each W+ away from the average identity's at the same geometry (`CandidateSettings.spread`);
        `offset` is added to the W+ (a remembered push, `_push_away`); `expression_input` as in
        `styles`."""
        wplus = self.styles(identities, geometry_vector, spread, expression_input)
        if offset is not None:
            wplus = wplus + offset.to(wplus)
        return self.generator(wplus).clamp(-1, 1)

    def styles(
        self,
        identities: Tensor,
        geometry_vector: Tensor,
        spread: float = 1.0,
        expression_input: float | None = None,
    ) -> Tensor:
        """The W+ [N, S, D] the identities [N, D] are rendered from at one geometry [1, G] or one
        each [N, G]: f_mlp's, `spread` away from the average identity's, then turned to the
        geometry's yaw and pitch (`PoseCorrection`, `FusionSettings.follow_pose`).
        `expression_input`: how far f_mlp is given the geometry's expression; None:
        `FusionSettings.expression_input` (a search's neutral round passes 0)."""
        n = len(identities)
        geometry_vector = geometry_vector.expand(n, -1)
        rendered_at = self._expression_input(geometry_vector, expression_input)
        wplus = self.gie.styles(identities, rendered_at)
        if spread != 1.0:
            mean = self.gie.style_mlp.input_mean[: self.gie.config.identity_dim].to(identities)
            centre = self.gie.styles(mean.expand(n, -1), rendered_at)
            wplus = torch.lerp(centre, wplus, spread)
        if self.pose_correction is not None and self.fusion.follow_pose:
            # the geometry vector ends with the pose (yaw, pitch, roll); roll is the fit's rotation
            wplus = self.pose_correction(wplus, geometry_vector[:, -3:-1])
        if self.expression_correction is not None and self.fusion.follow_expression:
            wplus = self.expression_correction(wplus, smile_of(geometry_vector))  # the original's smile
        return wplus

    def _expression_input(self, geometry_vector: Tensor, strength: float | None = None) -> Tensor:
        """The geometry vectors [N, G] f_mlp renders from: their blendshapes moved `strength`
        (None: `FusionSettings.expression_input`) of the way from GIE's training mean to the
        original's."""
        strength = self.fusion.expression_input if strength is None else strength
        if strength == 1.0:
            return geometry_vector
        mean = self.gie.style_mlp.input_mean[EXPRESSION_COLUMNS].to(geometry_vector)
        moved = geometry_vector.clone()
        moved[:, EXPRESSION_COLUMNS] = torch.lerp(
            mean.expand(len(geometry_vector), -1), geometry_vector[:, EXPRESSION_COLUMNS], strength
        )
        return moved

    def render_points(self, renders: Tensor) -> np.ndarray:
        """The mesh of each rendered face [N, 3, S, S] in crop pixels [N, 478, 2]."""
        return (self.geometry(renders).landmarks[..., :2] * self.image_size - 0.5).cpu().numpy()

    def fuse_renders(
        self,
        original: np.ndarray,
        original_points: np.ndarray,
        renders: Tensor,
        settings: FusionSettings | None = None,
        render_points: np.ndarray | list[np.ndarray] | None = None,
        keep: np.ndarray | None = None,
        source_width: float | None = None,
    ) -> list[FusedFace]:
        """Each rendered face [N, 3, S, S] laid onto one original crop by its own mesh
        (`render_points`, `render_points()` of the renders, when already known), the original's
        pixels kept where `keep` says (`lenses`); `source_width`: photo pixels the crop spans
        (`fusion.fuse_face`)."""
        settings = settings or self.fusion
        points = self.render_points(renders) if render_points is None else render_points
        crops = tensor_to_crops(renders)
        return [
            fuse_face(original, original_points, c, p, settings, keep, source_width)
            for c, p in zip(crops, points, strict=True)
        ]

    def lenses(
        self, original: np.ndarray, points: np.ndarray, source_width: float | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """An original crop's glasses lenses (uint8, mesh in pixels; `source_width` the photo pixels
        it spans; `lens_kind`) as soft masks (kept, tinted): dark lenses stay in front of any fake
        face (`FusionSettings.keep_sunglasses`, `sunglasses_mask`); tinted ones tint it
        (`FusionSettings.tint_sunglasses`, `tinted_lens_mask`, `tint_lenses`). None where neither."""
        fusion = self.fusion
        kind = None
        if fusion.keep_sunglasses:
            # the glasses reader tells aviators and thin bridges, which the bridge edge misses
            glasses = original_glasses(original, points, source_width)
            kind = lens_kind(original, points, source_width, glasses)
        if kind == "dark":
            kept = sunglasses_mask(original, points)
            return (kept if kept.any() else None), None
        if kind == "tinted" and fusion.tint_sunglasses:
            tinted = tinted_lens_mask(original, points)
            return None, (tinted if tinted.any() else None)
        return None, None

    def _candidate_order(
        self, seed: int, reference, dtype: torch.dtype, rounds: int | None = None
    ) -> list[int]:
        """Candidate indices in the order they are rendered: keyed order, or, with a probe, the
        keyed pool sorted by how close the predicted gender, age (and glasses and facial hair,
        where the probe predicts them and the original's are known) are to the original's."""
        settings = self.candidates
        total = settings.count * (settings.max_rounds if rounds is None else rounds)
        if self.attribute_probe is None or reference is None:
            return list(range(total))
        pool = list(range(max(total, PROBE_POOL)))
        predicted = self.attribute_probe(
            self.dummy_identities([candidate_seed(seed, k) for k in pool], dtype)
        )
        reference = ApparentAttributes(*reference)
        targets = probe_targets(
            reference,
            predicted.shape[1],
            settings.age_stretch,
            skin_tone=settings.skin_tone_weight > 0,
            gender_margin=settings.gender_margin,
        )
        wanted_male = sure_gender_target(reference.male, settings.gender_margin)
        gap = (torch.sigmoid(predicted[:, 0]) - wanted_male).abs() * settings.gender_weight
        gap = gap + settings.age_weight * (predicted[:, 1] - targets[1]).abs()
        weights = {2: settings.glasses_weight, 3: settings.facial_hair_weight}
        for row, target in targets.items():
            if row in weights:
                gap = gap + weights[row] * (predicted[:, row].clamp(0, 1) - target).abs()
        if SKIN_TONE_ROW in targets:
            tone_gap = (predicted[:, SKIN_TONE_ROW] - targets[SKIN_TONE_ROW]).abs()
            tone_gap = (tone_gap - settings.skin_tone_tolerance).clamp(min=0)
            gap = gap + settings.skin_tone_weight * tone_gap
        ranked = sorted(pool, key=lambda k: (float(gap[k]), k))
        return ranked[:total]

    def _scores(
        self,
        reference: Tensor,
        reference_attributes,
        faces: list[np.ndarray],
        points: np.ndarray | None = None,
        second_reference: Tensor | None = None,
        glasses_views: list[np.ndarray] | None = None,
        source_width: float | None = None,
        dark_lenses_added: bool = False,
        original_under_eye: float | None = None,
    ) -> list[CandidateScore]:
        """Each fused candidate's identity similarity to the original (SFace embedding `reference`,
        and the second judge's `second_reference` when the search has one) and, when keeping
        attributes (`reference_attributes`, `ApparentAttributes`), its apparent gender, age, glasses
        and facial hair (`candidate_glasses`, `facial_hair_score` and `chin_texture` at the
        original's mesh `points`; glasses on `glasses_views` instead of the previews when given; the
        previews show the face as the photo will, at `source_width` photo pixels, which
        `candidate_glasses` allows for). `dark_lenses_added`: dark lenses over both eyes of a candidate
        (`sunglasses_score`) count as glasses it adds; the search says so where the original wears
        none that are kept in front of the fake; `original_under_eye`: the original's
        `under_eye_shade`, below which a framed candidate's dimmed by `UNDER_EYE_DIMMED_BY` wears
        lenses however light they look."""
        crops = crops_to_tensor(faces, device=reference.device, dtype=reference.dtype)
        similarity = (self.identity(crops) @ reference).tolist()
        second = [None] * len(faces)
        if second_reference is not None:
            cosine = self.second_identity(crops) @ second_reference
            second = in_sface_units(cosine, self.candidates.second_judge).tolist()
        if self.attributes is None or reference_attributes is None:
            return [CandidateScore(s, second_similarity=t) for s, t in zip(similarity, second, strict=True)]
        found = self.attributes(crops)
        original = ApparentAttributes(*reference_attributes)
        male, age, glasses = original.male, original.age, original.glasses
        if points is None:  # no mesh: neither accessory can be read
            wears = moustache = grown = beard = [None] * len(faces)
            darkened = [False] * len(faces)
        else:
            # Glasses are read where the fake's own would show: on the previews, or on the renders
            # alone when the original's dark glasses are kept in front of them.
            views, span = (faces, source_width) if glasses_views is None else (glasses_views, None)
            wears = [candidate_glasses(face, points, span) for face in views]
            # Dark lenses over both eyes are glasses an original with light eyes does not wear,
            # whether or not it wears clear ones. Rare among candidates (at SUNGLASSES_EYES 1 of
            # 704 on 150 LFW faces, 2 of 652 on CelebA's), but a fake that kept one showed a
            # clear-glasses wearer in sunglasses; below it dark-eyed faces without glasses mix in,
            # so there only a candidate whose frames read too counts as in tinted lenses (the rule
            # that reads originals, `wears_tinted_glasses`): two of 42 fakes of LFW's clear-glasses
            # wearers had such lenses in session 36. Fainter tints still showed (3 of LFW's 150
            # evaluation fakes in session 39, at 0.52-0.66): in frames, from SUNGLASSES_EYES_FAINT
            # they count where the skin under the eyes is darkened too, as a lens darkens it and
            # dark eyes or make-up do not (`under_eye_shade`).
            darkened = [
                dark_lenses_added
                and (
                    (shade := sunglasses_score(face, points)) >= SUNGLASSES_EYES
                    or (framed and shade >= SUNGLASSES_EYES_TINTED)
                    or (
                        framed
                        and ((under := under_eye_shade(face, points)) <= UNDER_EYE_TINTED)
                        and (
                            shade >= SUNGLASSES_EYES_FAINT
                            # mirrored or grey lenses: light, yet the skin under them dimmed
                            or (
                                original_under_eye is not None
                                and under <= original_under_eye - UNDER_EYE_DIMMED_BY
                            )
                        )
                    )
                )
                for face, framed in zip(faces, wears, strict=True)
            ]
            # facial hair is read on the upper lip (a moustache, or the beard around one), on its
            # own or as grown over the original's upper lip; a beard on a bare chin is read there
            # too, by its texture (`chin_texture`)
            lip = [facial_hair_score(face, points) for face in faces]
            moustache = [bool(score >= FACIAL_HAIR_EDGE) for score in lip]
            if original.upper_lip_score is not None:
                grown = [bool(score - original.upper_lip_score >= FACIAL_HAIR_GAIN_EDGE) for score in lip]
            else:
                grown = [False] * len(faces)
            beard = [bool(chin_texture(face, points) >= CHIN_TEXTURE_EDGE) for face in faces]
        return [
            CandidateScore(
                similarity=s,
                second_similarity=t,
                gender_gap=abs(float(p) - male),
                age_gap=abs(float(a) - age),
                same_gender=(float(p) >= 0.5) == (male >= 0.5),
                sure_gender=surely_same_gender(float(p), male, self.candidates.gender_margin),
                male_probability=float(p),
                age=float(a),
                adds_glasses=(g is True and glasses is False) or d,
                loses_glasses=g is False and glasses is True,
                adds_facial_hair=((h is True or m is True) and original.facial_hair is False)
                or (b is True and original.bare_chin),
                loses_facial_hair=h is False and original.facial_hair is True,
            )
            for s, t, p, a, g, d, h, m, b in zip(
                similarity,
                second,
                found.male_probability,
                found.age,
                wears,
                darkened,
                moustache,
                grown,
                beard,
                strict=True,
            )
        ]

    @torch.no_grad()
    def anonymize(
        self,
        crops: Tensor,
        secret: Secret,
        *,
        seeds: list[int] | None = None,
        salts: list[bytes] | None = None,
        face_offset: int = 0,
        search: bool = True,
        source_widths: Sequence[float | None] | None = None,
        profiles: Sequence[bool] | None = None,
    ) -> AnonymizedFaces:
        """`source_widths`: photo pixels each crop spans (`align.crop_source_width`); the search then
        judges a fake as it will look pasted back (`fusion.FusedFace.preview`: a small face's crop
        was upsampled, so the detail a render adds at the crop's size is lost in the photo, and a
        fake judged different at 256 px could be its original at 60). None: at the crop's size.
        `profiles`: faces the detector sees in profile (`align.seen_in_profile`): turned too far
        to render even where the geometry prior reads them under `FusionSettings.max_yaw`."""
        n = crops.shape[0]
        embeddings = self.identity(crops)
        widths = [None] * n if source_widths is None else list(source_widths)
        if len(widths) != n:
            raise ValueError(f"{len(widths)} source widths for {n} crops")
        in_profile = np.zeros(n, bool) if profiles is None else np.asarray(profiles, bool)
        if in_profile.shape != (n,):
            raise ValueError(f"{in_profile.size} profile flags for {n} crops")
        second_embeddings = [None] * n
        if self.candidates.second_judge is not None and search:
            second_embeddings = self.second_identity(crops)
        encoded, seeds = encode_identities(
            self.codec,
            embeddings.float().cpu().numpy(),
            secret,
            seeds=seeds,
            salts=salts,
            face_offset=face_offset,
        )
        geometry = self.geometry(crops)
        vectors = self.geometry_vector(geometry)
        if self.geometry_filter is not None and seeds is not None:
            vectors = self.geometry_filter(list(seeds), vectors)
        size = self.image_size
        originals = tensor_to_crops(crops)
        unit_points = geometry.landmarks[..., :2].cpu().numpy()
        original_points = unit_points * size - 0.5
        lenses = [self.lenses(o, q, w) for o, q, w in zip(originals, original_points, widths, strict=True)]
        occluders, tints = [kept for kept, _ in lenses], [tinted for _, tinted in lenses]
        turned = self.turned_too_far(geometry) | in_profile
        reference_attributes = [None] * n
        if self.attributes is not None:
            found = self.attributes(crops)
            tones = [cheek_tone(o, q) for o, q in zip(originals, unit_points, strict=True)]
            reference_attributes = [
                ApparentAttributes(
                    float(p),
                    float(a),
                    # kept dark glasses stand in front of the fake: it must bring none of its own
                    False if k is not None else original_glasses(o, q, w),
                    original_facial_hair(lip, float(p), chin),
                    t,
                    # a face that looks female is drawn female: a textured chin there is shadow or
                    # grain far more often than hair (as `original_facial_hair` reads the lip)
                    float(p) < 0.5 or chin_surely_bare(chin),
                    lip,
                    d,
                )
                for p, a, o, q, k, t, w, lip, chin, d in zip(
                    found.male_probability,
                    found.age,
                    originals,
                    original_points,
                    occluders,
                    tones,
                    widths,
                    [facial_hair_score(o, q) for o, q in zip(originals, original_points, strict=True)],
                    [chin_hair_probability(o, q) for o, q in zip(originals, original_points, strict=True)],
                    self._descriptor_tones(second_embeddings),
                    strict=True,
                )
            ]
        chosen_crops, chosen_masks, scores, rendered_seeds, attributes, whole_region = [], [], [], [], [], []
        shortfalls: list[tuple[str, ...]] = []
        fallbacks: list[Fallback | None] = [None] * n
        for i in range(n):
            if turned[i]:
                crop, mask, level = self._turned_face(
                    crops[i : i + 1], original_points[i], embeddings[i], widths[i]
                )
                yaw = abs(float(geometry.pose[i, 0]))
                fallbacks[i] = Fallback(
                    self.fusion.turned_filter,
                    (
                        f"turned {yaw:.0f} degrees, beyond the {self.fusion.max_yaw:g} the generator renders"
                        if yaw > self.fusion.max_yaw
                        else f"seen in profile by the detector (pose read as {yaw:.0f} degrees), "
                        "a view the generator does not render"
                    )
                    + _strength_note(level),
                )
                scores.append(None)
                attributes.append(None)
                shortfalls.append(())  # (the filter's own bar: `_turned_face`; its reason is reported)
                rendered_seeds.append(seeds[i])
                chosen_crops.append(crop)
                chosen_masks.append(mask)
                whole_region.append(False)
                continue
            search_face = _FaceSearch(
                self,
                seed=seeds[i],
                original=originals[i],
                points=original_points[i],
                vector=vectors[i : i + 1],
                embedding=embeddings[i],
                second_embedding=second_embeddings[i],
                reference=reference_attributes[i],
                occluder=occluders[i],
                dtype=crops.dtype,
                width=widths[i],
            )
            score, face, rendered, replaced_whole = search_face.run(search)
            if tints[i] is not None:
                # After the search, which judges the fake untinted: lenses of one colour on both
                # faces made SFace find them alike (43 CelebA wearers: mean similarity 0.263 ->
                # 0.286) and pushed fakes harder with nothing gained against another photo of the
                # person (FaceNet), some of them to a blotched face.
                face = dataclasses.replace(face, crop=tint_lenses(face.crop, originals[i], tints[i]))
            scores.append(score.similarity)
            tone = cheek_tone(face.preview, unit_points[i])
            report = self._attribute_report(
                reference_attributes[i], score, occluders[i] is not None, tone, tints[i] is not None
            )
            attributes.append(report)
            shortfalls.append(score.shortfalls(self.candidates))
            rendered_seeds.append(rendered)
            chosen_crops.append(face.crop)
            chosen_masks.append(face.mask)
            whole_region.append(replaced_whole)
        images = crops_to_tensor(chosen_crops, device=crops.device, dtype=crops.dtype)
        bits = torch.from_numpy(np.stack([e.bits for e in encoded])).to(crops.device, crops.dtype)
        return AnonymizedFaces(
            images,
            bits,
            tuple(e.salt for e in encoded),
            tuple(rendered_seeds),
            masks=np.stack(chosen_masks),
            similarities=tuple(scores),
            attributes=tuple(attributes),
            whole_region=tuple(whole_region),
            fallbacks=tuple(fallbacks),
            shortfalls=tuple(shortfalls),
        )

    def turned_too_far(self, geometry: Geometry) -> np.ndarray:
        """bool [B]: faces turned beyond `FusionSettings.max_yaw`, which get `turned_filter`."""
        return geometry.pose[:, 0].abs().float().cpu().numpy() > self.fusion.max_yaw

    def _turned_face(
        self, crop: Tensor, points: np.ndarray, reference: Tensor, width: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """A face turned too far to render (beyond `FusionSettings.max_yaw`, or seen in profile by
        the detector): its crop [1, 3, S, S] through the classic
        `turned_filter`, pasted over the default face ellipse and the face's mesh region (the mesh
        follows a profile beyond the ellipse), as uint8 crop, mask [S, S] and the filter's strength
        level (`classic.stronger_filter`). The filter must pass the search's bar as a fake must:
        while SFace, judging the pasted crop as the photo shows it (`width`), still finds it more
        like the original (`reference`) than `CandidateSettings.max_similarity`, it is applied
        more strongly (up to `TURNED_FILTER_LEVELS`; the least similar is kept). A blur of a tenth
        of the face width left a small, defocused face as it was: on hamilton, 7 of 27 blurred
        face-frames matched their originals for FaceNet at FAR 1e-3. When no strength passes,
        the strongest is tried over the whole crop (`TURNED_HEAD_LEVEL`): a blur inside the face
        region leaves the hair and the outline, which both recognisers still matched on
        hamilton's turned, defocused faces (SFace 0.38-0.47 at the strongest level, 0.22-0.25
        over the whole crop)."""
        size = self.image_size
        region = np.maximum(face_mask(size), face_region_mask(points, size, self.fusion)).astype(np.float32)
        masks = {False: region, True: head_mask(size)}  # by whether it is the last resort
        weights = {k: torch.tensor(m).to(crop)[None, None] for k, m in masks.items()}  # (copies)
        best = filtered = None
        for level in range(TURNED_HEAD_LEVEL + 1):
            whole = level == TURNED_HEAD_LEVEL
            if not whole:  # the last resort reuses the strongest filter, over the whole crop
                filtered = stronger_filter(self.fusion.turned_filter, level).anonymize(crop)
            weight, mask = weights[whole], masks[whole]
            # (the crop is the photo already; the filter's output is resampled when pasted back)
            pasted = weight * at_source_resolution(filtered, [width]) + (1 - weight) * crop
            similarity = float(self.identity(pasted)[0] @ reference)
            if best is None or similarity < best[0]:
                best = similarity, filtered, level, mask
            if similarity <= self.candidates.max_similarity:
                break
        return tensor_to_crops(best[1])[0], best[3], best[2]

    def _descriptor_tones(self, second_embeddings) -> list[float | None]:
        """Each original's skin tone read from its dlib descriptor (`readers.descriptor_tone`), where
        the search has dlib as its second judge and the probe a skin-tone row to aim with."""
        wanted = (
            self.candidates.second_judge == "dlib-resnet"
            and self.candidates.skin_tone_weight > 0
            and self.attribute_probe is not None
            and len(self.attribute_probe.weight) > SKIN_TONE_ROW
        )
        return [
            descriptor_tone(e.float().cpu().numpy()) if wanted and e is not None else None
            for e in second_embeddings
        ]

    def _attribute_report(
        self,
        reference,
        score: CandidateScore,
        sunglasses: bool = False,
        skin_tone: float | None = None,
        tinted: bool = False,
    ) -> dict | None:
        """`sunglasses`: the original's dark glasses kept in front of the fake; `tinted`: its tinted
        lenses laid over it; `skin_tone`: the fake's cheek ITA as the photo shows it (`cheek_tone`)."""
        if reference is None or score.male_probability is None:
            return None
        reference = ApparentAttributes(*reference)
        return {
            "estimator": getattr(self.attributes, "name", type(self.attributes).__name__),
            "original": {
                "male_probability": round(reference.male, 3),
                "age": round(reference.age, 1),
                "glasses": reference.glasses,
                "facial_hair": reference.facial_hair,
                "sunglasses_kept": sunglasses,
                "sunglasses_tinted": tinted,
                "skin_tone_ita": _rounded(reference.skin_tone),
                "skin_tone_read": _rounded(reference.descriptor_tone),
            },
            "anonymized": {
                "male_probability": round(score.male_probability, 3),
                "age": round(score.age, 1),
                "glasses_added": score.adds_glasses,
                "glasses_lost": score.loses_glasses,
                "facial_hair_added": score.adds_facial_hair,
                "facial_hair_lost": score.loses_facial_hair,
                "skin_tone_ita": _rounded(skin_tone),
            },
        }

    def _refinement_offsets(
        self, wplus: Tensor, identities: Tensor, steps: int, scenes: Callable[[list[int]], _RefineScenes]
    ) -> Tensor:
        """Per face, what `steps` of refinement add to its W+ [N, S, D]: found once per identity
        (on the first face it is rendered on, laid onto that face's crop as `scenes` of those
        faces' indices says) and reused for that identity afterwards, so every frame of a video
        track gets the refined likeness for one refinement (`REFINEMENTS_KEPT` identities
        remembered)."""
        keys = [(identity.float().cpu().numpy().tobytes(), steps) for identity in identities]
        offsets = {key: self._refinements[key] for key in keys if key in self._refinements}
        # the first face of each identity not yet refined (two faces of one identity: one refinement)
        new = [i for i, key in enumerate(keys) if key not in offsets and keys.index(key) == i]
        if new:
            refined = self._refine(wplus[new], identities[new], steps, scenes(new))
            offsets |= {keys[i]: offset for i, offset in zip(new, refined - wplus[new], strict=True)}
        for key, offset in offsets.items():
            _keep_recent(self._refinements, key, offset)
        return torch.stack([offsets[key] for key in keys]).to(wplus)

    def _refine(
        self, wplus: Tensor, identities: Tensor, steps: int, scenes: _RefineScenes, lr: float = 0.02
    ) -> Tensor:
        """`steps` of Adam on W+ towards the given identities (SFace cosine) while the render keeps
        its landmarks and expression (MediaPipe): recovery is rare and a user waits for it, so a
        few seconds buy a closer likeness. The likeness is judged on the render laid onto its crop
        inside the fused region (`scenes`), as the recovered photo shows it, not on the bare
        render: on 30 LFW pairs FaceNet's mean cosine to another photo of the person rose 0.479
        -> 0.527 with that (docs/measurements.md, session 26); and at the photo's resolution
        (`at_source_resolution`, as the push judges), so no step is spent on detail the paste-back
        drops (docs/measurements.md, session 27). FaceNet never takes part, so it can judge the result."""
        with torch.inference_mode(False), torch.enable_grad():
            w = wplus.clone().detach().requires_grad_(True)
            target = identities.clone().detach()
            grids, weights, backgrounds = (
                t.clone() for t in (scenes.grids, scenes.weights, scenes.backgrounds)
            )
            hold = None
            optimizer = torch.optim.Adam([w], lr=lr)
            for _ in range(steps):
                image = self.generator(w).clamp(-1, 1)
                if hold is None:  # the start's landmarks and expression, from step 0's render
                    hold = _GeometryHold(self.geometry, image.detach())
                laid = torch.nn.functional.grid_sample(
                    image, grids, mode="bilinear", padding_mode="reflection", align_corners=False
                )
                composite = weights * at_source_resolution(laid, scenes.widths) + (1 - weights) * backgrounds
                identity_loss = 1 - (self.identity(composite) * target).sum(1).mean()
                optimizer.zero_grad()
                (identity_loss + hold(image)).backward()
                optimizer.step()
        return w.detach()

    def _push_away(
        self,
        wplus: Tensor,
        original: np.ndarray,
        original_points: np.ndarray,
        render_points: np.ndarray,
        mask: np.ndarray,
        embedding: Tensor,
        width: float | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`CandidateSettings.away_steps` of Adam on a dummy's W+ [1, S, D] lowering SFace's cosine
        to the original (`embedding`) of the render laid onto the original crop as the fusion lays
        it (its similarity fit, differentiable; `mask` [S, S] the fused face's region), while the
        render keeps its landmarks and expression, the identity's components along the
        attribute probe's rows (apparent gender, age, glasses) stay where they were, and neither
        the upper lip nor the eyes darken against the cheeks. (The
        paper's away-from-original term, applied at inference to the faces the keyed search
        leaves too close; FaceNet never takes part.) Returns the W+ after each step [steps, S, D]
        and their renders [steps, 3, S, S]."""
        steps, lr = self.candidates.away_steps, self.candidates.away_lr
        matrix = fit_render_to_original(render_points, original_points)
        with torch.inference_mode(False), torch.enable_grad():
            # (tensors made here, not under the caller's inference mode, can take part in autograd)
            grid = _similarity_grid(matrix, self.image_size).to(wplus.device, wplus.dtype)
            weight = torch.from_numpy(mask).to(wplus.device, wplus.dtype)[None, None]
            background = crops_to_tensor([original], device=wplus.device, dtype=wplus.dtype).clone()
            held = None
            if self.attribute_probe is not None:
                rows = self.attribute_probe.weight.detach().clone().to(wplus.device, wplus.dtype)
                held = torch.linalg.qr(rows.T).Q  # [D, rows]: the probe's directions
            w = wplus.clone().detach().requires_grad_(True)
            target = embedding.detach().clone().to(wplus.device, wplus.dtype)[None]
            image = self.generator(w).clamp(-1, 1)  # the start: step 0's render too
            hold = _GeometryHold(self.geometry, image)
            start_attributes = None
            lip, cheeks = _upper_lip_and_cheeks(render_points, self.image_size, wplus.device)
            eyes = _eye_regions(render_points, self.image_size, wplus.device)
            start_hair = _upper_lip_darkness(image, lip, cheeks).detach()
            start_eyes = _eye_darkness(image, eyes, cheeks).detach()
            optimizer = torch.optim.Adam([w], lr=lr)
            path, renders = [], []
            for step in range(steps + 1):
                if step > 0:  # the render of the W+ the previous step reached
                    if step < steps:
                        image = self.generator(w).clamp(-1, 1)
                    else:  # the last takes no gradient: the generator's faster inference path
                        with torch.no_grad():
                            image = self.generator(w.detach()).clamp(-1, 1)
                    path.append(w.detach().clone()[0])
                    renders.append(image.detach()[0])
                if step == steps:
                    break
                laid = torch.nn.functional.grid_sample(
                    image, grid, mode="bilinear", padding_mode="reflection", align_corners=False
                )
                # judged as the photo will show it (`at_source_resolution`): a small face is pushed
                # in what survives the paste-back, not in detail the photo drops
                composite = weight * at_source_resolution(laid, [width]) + (1 - weight) * background
                identity = self.identity(composite)
                loss = (identity * target).sum(1).mean()
                if held is not None:
                    components = identity @ held
                    if start_attributes is None:
                        start_attributes = components.detach()
                    loss = loss + 10 * (components - start_attributes).square().sum(1).mean()
                # no moustache grown where there was none (a darker upper lip is what the search's
                # `facial_hair_score` reads): moving away from a clean-shaven man's identity
                # otherwise darkens it within a step or two
                hair = _upper_lip_darkness(image, lip, cheeks)
                # nor lenses darkened: hiding the eyes is the quickest way away from a recogniser,
                # and a clear-glasses wearer's pushed fake came out in sunglasses (LFW, session 47)
                eyes_darker = torch.relu(_eye_darkness(image, eyes, cheeks) - start_eyes).sum()
                hair_grown = torch.relu(hair - start_hair).sum()
                loss = loss + (hold(image) + 10 * hair_grown + PUSH_EYES_WEIGHT * eyes_darker)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return torch.stack(path), torch.stack(renders)

    def _remember_push(self, seed: int, offset: Tensor) -> None:
        """The W+ offset `_push_away` found for a dummy seed, reused when that seed is rendered
        again without a search (the later frames of a video track)."""
        _keep_recent(self._pushes, seed, offset.detach())

    def _remember_neutral(self, seed: int) -> None:
        """A dummy seed kept from a neutral round, rendered so again without a search (the later
        frames of a video track)."""
        _keep_recent(self._neutral_seeds, seed, None)

    def _refine_scenes(
        self,
        crops: Tensor,
        points: np.ndarray,
        wplus: Tensor,
        keeps: list[np.ndarray | None],
        widths: list[float | None],
    ) -> _RefineScenes:
        """Where each unrefined render of `wplus` [N, S, D] lies on its crop [N, 3, S, S] (mesh
        `points` [N, 478, 2] in pixels; `widths` the photo pixels each spans) as the fusion lays
        it: its similarity fit as a `grid_sample` grid and the fused region (without what `keeps`
        holds in front of the face), for `_refine`."""
        size = self.image_size
        renders = self.generator(wplus).clamp(-1, 1)
        render_points = self.render_points(renders)
        grids, weights = [], []
        for k, crop in enumerate(tensor_to_crops(crops)):
            fused = self.fuse_renders(
                crop, points[k], renders[k : k + 1], render_points=render_points[k : k + 1], keep=keeps[k]
            )[0]
            grids.append(_similarity_grid(fit_render_to_original(render_points[k], points[k]), size))
            weights.append(torch.from_numpy(np.ascontiguousarray(fused.mask, np.float32))[None, None])
        return _RefineScenes(
            torch.cat(grids).to(crops), torch.cat(weights).to(crops), crops.detach().clone(), list(widths)
        )

    @torch.no_grad()
    def render_identities(
        self,
        crops: Tensor,
        identities: Tensor,
        refine_steps: int = 0,
        source_widths: Sequence[float | None] | None = None,
    ) -> tuple[Tensor, np.ndarray]:
        """The identities rendered at each crop's pose and expression and laid onto it, with the
        glasses and facial hair the crop shows (`keep_accessories`);
        `refine_steps` > 0 optimises each render towards its identity first (`--refine`), once
        per identity: later faces of the same identity reuse its W+ offset, judged at the photo's
        resolution where `source_widths` (`align.crop_source_width`) says the face is small. A face
        turned beyond `FusionSettings.max_yaw` is left as it is (mask 0): it was filtered, not
        replaced, and a render laid onto it would be a second face inside the head."""
        geometry = self.geometry(crops)
        size = self.image_size
        widths = [None] * len(crops) if source_widths is None else list(source_widths)
        originals = tensor_to_crops(crops)
        images, masks = list(originals), [np.zeros((size, size), np.float32) for _ in originals]
        rendered = np.flatnonzero(~self.turned_too_far(geometry))
        if len(rendered):
            points = (geometry.landmarks[..., :2] * size - 0.5).cpu().numpy()
            identities = identities.to(crops)[rendered]
            identities = self.keep_accessories(identities, crops[rendered], points[rendered])
            wplus = self.styles(identities, self.geometry_vector(geometry)[rendered])
            # dark glasses kept on the anonymized face stay in front of the recovered one too
            lenses = [self.lenses(originals[i], points[i], widths[i]) for i in rendered]
            keeps, tints = [kept for kept, _ in lenses], [tinted for _, tinted in lenses]
            if refine_steps > 0:
                wplus = wplus + self._refinement_offsets(
                    wplus,
                    identities,
                    refine_steps,
                    lambda new: self._refine_scenes(
                        crops[torch.as_tensor(rendered[new])],
                        points[rendered[new]],
                        wplus[new],
                        [keeps[k] for k in new],
                        [widths[i] for i in rendered[new]],
                    ),
                )
            renders = self.generator(wplus).clamp(-1, 1)
            for k, i in enumerate(rendered):
                fused = self.fuse_renders(originals[i], points[i], renders[k : k + 1], keep=keeps[k])[0]
                crop = fused.crop if tints[k] is None else tint_lenses(fused.crop, originals[i], tints[k])
                images[i], masks[i] = crop, fused.mask
        return crops_to_tensor(images, device=crops.device, dtype=crops.dtype), np.stack(masks)
