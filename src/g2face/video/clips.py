"""Anonymize and recover whole video clips: tracked faces, one fake identity per track, fail-closed.

Per frame: detect (down to a low score) → track (IoU + constant velocity, One-Euro smoothed
landmarks) → anonymize every tracked face with its track's seed (at the detected place, or at the
predicted place for up to `max_predicted` frames without a detection) → cover every place where a
face may still be exposed with a strong blur (the fail-closed policy, docs/video.md) → seal the
original pixels of every changed region into the frame's exact-recovery container (sidecar).

The dummy seed of track k is `kdf.dummy_seed(master_key(secret, clip_salt), k)`: the same person keeps
one fake identity for the whole clip, different clips (fresh salt) get different ones.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import secrets as random_bytes
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from g2face.detection import YuNetDetector
from g2face.io.sidecar import FrameChain, SidecarReader, new_clip_id, sidecar_path, write_sidecar
from g2face.io.video import EncoderSettings, VideoFrame, VideoInfo, probe_video, read_frames, transcode_video
from g2face.payload import Secret, kdf
from g2face.payload.carriers import (
    ContainerError,
    DctQimCarrier,
    Region,
    WrongSecretError,
    open_container,
    read_payload,
    restore_regions,
    seal_regions,
)
from g2face.pipeline.g2face import G2FacePipeline, UnverifiedRecoveryError
from g2face.pipeline.selection import SMALL_FACE_METHODS
from g2face.types import FaceDetection, Footprint, InputError
from g2face.video.tracking import FaceTracker, OneEuroFilter, TrackedFace

CLIP_SALT_BYTES = 16


@dataclass(frozen=True)
class FailClosedPolicy:
    """When a face may be exposed, its place is blurred (Gaussian, σ = `blur_sigma` × the padded
    box side) over the box padded by `padding` of its size on every side, and the frame reported.

    Exposure risks: a track lost for more than `max_predicted` frames (covered for `max_lost` more
    at its slowing predicted place), a detection scoring between `min_score` and the confirm score
    that matches no track, and a frame the anonymizer failed on (every face of it blurred)."""

    min_score: float = 0.5
    confirm_score: float = 0.7
    max_predicted: int = 5
    max_lost: int = 10
    padding: float = 0.3
    blur_sigma: float = 0.12
    smooth: bool = True


class GeometrySmoother:
    """A model's `geometry_filter` for video (`FusionAnonymizer.with_geometry_filter`): per dummy
    seed (one per track), the geometry vectors [shape ⊕ expression ⊕ pose (3, degrees)] through
    One-Euro filters at the clip's frame rate — the expression in blendshape units, the pose in
    `POSE_SCALE` degrees — so a still face renders steadily and a moving one follows with little
    lag (the fake's expression error against the original's frame did not change on d0 and d6:
    docs/video.md "Session 21"). The shape part is the model's constant average (filtering leaves
    it as it is)."""

    POSE_SCALE = 30.0

    def __init__(self, rate: float):
        self.rate = rate
        self._filters: dict[int, tuple[OneEuroFilter, OneEuroFilter]] = {}

    def __call__(self, seeds: list[int], vectors: torch.Tensor) -> torch.Tensor:
        out = vectors.clone()
        for i, seed in enumerate(seeds):
            if seed not in self._filters:
                self._filters[seed] = (OneEuroFilter(self.rate), OneEuroFilter(self.rate))
            expression, pose = self._filters[seed]
            v = vectors[i].detach().cpu().double().numpy()
            smoothed = np.concatenate([expression(v[:-3], 1.0), pose(v[-3:], self.POSE_SCALE)])
            out[i] = torch.from_numpy(smoothed).to(vectors)
        return out


@dataclass(frozen=True)
class DummyPolicy:
    """How a track's fake face is renewed or replaced by a filter (docs/video.md, "Leak").

    Re-search: when the anonymizer's own identity cosine between a track's render and its original
    (`AnonymizedFace.similarity`) stays above `max_similarity` (default: the model's acceptance
    bound, `model.candidates.max_similarity`; no re-search for a model without one) for
    `re_search_after` consecutive frames, the candidate search runs again on that frame from the
    track's next keyed seed (`kdf.dummy_seed(master, track, attempt)`), and the track switches to
    the new dummy from the next frame on if it is at least `min_gain` (about twice SFace's
    frame-to-frame jitter) further from the original on the same frame. At most `max_re_searches`
    per track: each switch is one identity change. Off by default: with SFace as the judge it did
    not lower FaceNet's leak rate on d3 or hamilton (docs/video.md, "Re-search").

    Search width: a track's dummy is searched once and then rendered on every frame, so the search
    can afford more candidates than a photo's: `track_candidates` per round (None: the model's
    own). On d3's first 60 frames over 3 clip salts, 4 per round instead of the photo default's 2
    lowered the mean FaceNet cosine to the original from 0.51 to 0.42 and the leak rate at 0.573
    from 20.6 % to 18.3 %; 8 per round chose the same dummies as 4 (docs/video.md, "Leak").

    Small faces: a track narrower than `min_face` pixels (its smoothed box) gets the classic
    `small_faces` filter instead of the model, until it is `SMALL_FACE_HYSTERESIS` × wider (no
    flipping between the two at the threshold). Off by default: the model's leak does not rise on
    small faces (docs/video.md, "Small faces"); the filter serves a stricter policy."""

    re_search_after: int = 3
    max_re_searches: int = 0
    min_gain: float = 0.05
    max_similarity: float | None = None
    min_face: float = 0.0
    small_faces: str = "blur"
    track_candidates: int | None = 4
    smooth_geometry: bool = True
    """Render each track's fake at its expression and pose One-Euro filtered over the track's
    frames (`GeometrySmoother`) instead of each frame's own estimate, whose jitter re-synthesises
    the fake's texture from frame to frame (docs/video.md, "Flicker")."""
    turned_hysteresis: float = 5.0
    """Degrees: a track the model last filtered as turned too far to render (its
    `FusionSettings.max_yaw`) is rendered again only once its head is this much below that bound,
    so a head held near the bound does not switch between fake and filter from frame to frame."""

    def __post_init__(self) -> None:
        if self.re_search_after < 1 or self.max_re_searches < 0 or self.min_face < 0:
            raise ValueError("re_search_after must be >= 1, max_re_searches and min_face >= 0")
        if self.turned_hysteresis < 0:
            raise ValueError(f"turned_hysteresis must be >= 0 degrees, got {self.turned_hysteresis}")
        if self.track_candidates is not None and self.track_candidates < 1:
            raise ValueError(f"track_candidates must be >= 1, got {self.track_candidates}")
        if self.small_faces not in SMALL_FACE_METHODS:
            known = ", ".join(SMALL_FACE_METHODS)
            raise ValueError(f"small_faces must be one of {known}, got {self.small_faces!r}")


SMALL_FACE_HYSTERESIS = 1.15


@dataclass(frozen=True, eq=False)
class AnonymizedFrame:
    image: np.ndarray
    container: bytes | None  # the original pixels of every changed region, sealed
    covered: np.ndarray  # bool [H, W]: pixels anonymized or blurred (metrics)
    faces: tuple[dict, ...]  # per tracked face: track id, state, box, method, similarity (JSON-ready)
    fail_closed: tuple[dict, ...]  # per blurred place: reason, box
    re_searches: tuple[dict, ...] = ()  # per track that searched again: similarities, switched or not


def clip_seed_key(secret: Secret, clip_salt: bytes) -> bytes:
    """The master key the clip's per-track dummy seeds come from (the payload KDF: scrypt for a
    password, HKDF for a key file)."""
    return kdf.master_key(secret, clip_salt, kdf.default_kdf_id(secret))


def landmarks_covered(covered: np.ndarray, detection: FaceDetection) -> bool:
    """Whether all 5 landmarks of `detection` lie on covered (anonymized or blurred) pixels."""
    height, width = covered.shape
    points = np.clip(np.round(detection.points).astype(int), 0, [width - 1, height - 1])
    return bool(covered[points[:, 1], points[:, 0]].all())


def is_small_face(width: float, min_face: float, was_small: bool) -> bool:
    """Whether a track's face gets the small-face filter this frame: narrower than `min_face`, or,
    for a track that had it, narrower than `SMALL_FACE_HYSTERESIS` × `min_face` (a face whose
    width jitters around the threshold does not flip between a rendered face and a blur)."""
    return width < min_face * (SMALL_FACE_HYSTERESIS if was_small else 1.0)


def _padded_box(d: FaceDetection, padding: float, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    w, h = d.width, d.height
    x0 = max(0, int(np.floor(d.box[0] - padding * w)))
    y0 = max(0, int(np.floor(d.box[1] - padding * h)))
    x1 = min(shape[1], int(np.ceil(d.box[2] + padding * w)))
    y1 = min(shape[0], int(np.ceil(d.box[3] + padding * h)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _with_model_view(pipeline: G2FacePipeline, view: str, **changes) -> G2FacePipeline:
    """The pipeline with its model replaced by the model's `view` (`with_candidates`: another
    candidate search, `with_fusion`: other fusion settings; networks shared); unchanged for a model
    without it (a learned network or a classic filter: no search, no fusion)."""
    if not hasattr(pipeline.model, view):
        return pipeline
    copied = copy.copy(pipeline)
    copied.model = getattr(pipeline.model, view)(**changes)
    return copied


class VideoAnonymizer:
    """Stateful per clip: feed the frames in order to `process`."""

    def __init__(
        self,
        pipeline: G2FacePipeline,
        secret: Secret,
        *,
        rate: float = 25.0,
        policy: FailClosedPolicy | None = None,
        dummies: DummyPolicy | None = None,
        clip_salt: bytes | None = None,
        seal: bool = True,
        pixel_payload: bool = False,
        detector=None,
    ):
        """`pixel_payload`: hide each face's identity payload in its pixels too. Off by default: its
        bits change every frame (fresh salt), which made most of the measured flicker, and H.264
        at CRF 18 keeps it readable in few frames (docs/video.md); the sidecar recovers a clip."""
        # the clip seals its own per-frame containers (blurred places included)
        carriers = dataclasses.replace(pipeline.carriers, container=False, pixel_payload=pixel_payload)
        self.pipeline = pipeline
        if carriers != pipeline.carriers:
            self.pipeline = copy.copy(pipeline)
            self.pipeline.carriers = carriers
        self.secret = secret
        self.policy = policy or FailClosedPolicy()
        self.seal = seal
        self.clip_salt = clip_salt if clip_salt is not None else random_bytes.token_bytes(CLIP_SALT_BYTES)
        self._seed_key = clip_seed_key(secret, self.clip_salt)
        # One image salt for the clip's payloads and sidecar containers (each still draws its own
        # salt behind it): a password is stretched once per clip, not twice per frame (~0.3 s each).
        self.image_salt = kdf.new_image_salt()
        self.clip_id = new_clip_id()  # the sidecar's records are sealed for (clip id, frame index)
        self.chain = FrameChain(self.clip_id)  # ... and for the frame of the record before each
        self.dummy_seeds: dict[int, int] = {}  # track id -> the dummy seed its (last) search chose
        # track id -> the in-pixel payload its first frame carried: every later frame of the track
        # carries the same bits, not a fresh payload, so lossy coding keeps it in more frames and any
        # frame that survives recovers the whole track (`recover_video`)
        self.track_payloads: dict[int, np.ndarray] = {}
        self.dummies = dummies or DummyPolicy()
        # A track's searches (its first frame, re-searches) run on a pipeline whose model renders
        # `track_candidates` per round; every other frame renders the chosen dummy.
        # No attribute steering on video: a known track re-renders its dummy seed on every frame,
        # and steering it to that frame's attribute estimates (age jitters by years from frame to
        # frame) would change the track's face from frame to frame.
        # Every track's dummy is pushed away from the original (`CandidateSettings.away_steps`),
        # not only one left above the search's bar: a dummy under the bar on the frame it was chosen
        # on came closer on the poses that followed (d3, salt 01: 35 % of frames matched), and one
        # push serves the whole track (its W+ offset is reused on every later frame).
        self.pipeline = _with_model_view(
            self.pipeline, "with_candidates", steer=0.0, push_above=float("-inf")
        )
        # Each track's fake is rendered at its expression and pose smoothed over its frames (the
        # per-frame estimates jitter, and the render follows them: `GeometrySmoother`).
        self.geometry_smoother = GeometrySmoother(rate) if self.dummies.smooth_geometry else None
        if self.geometry_smoother is not None:
            self.pipeline = _with_model_view(
                self.pipeline, "with_geometry_filter", geometry_filter=self.geometry_smoother
            )
        self.search_pipeline = self.pipeline
        if self.dummies.track_candidates is not None:
            self.search_pipeline = _with_model_view(
                self.pipeline, "with_candidates", count=self.dummies.track_candidates
            )
        # A track whose fake once needed the whole face region replaced (the model's anonymity
        # fallback: its render alone left too much of the original's outline) keeps that on every
        # later frame. Decided per frame, a head turn switched a d3 track between the two from
        # frame to frame, and with them its face's shape and apparent identity.
        self.whole_pipeline = _with_model_view(self.pipeline, "with_fusion", render_only=False)
        self.whole_region_tracks: set[int] = set()
        # Per track: frames whose fake misses some of the model's goals (`AnonymizedFace.shortfalls`),
        # and what the first of them missed, for a reviewer (the report's tracks).
        self.review_frames: dict[int, int] = {}
        self.review: dict[int, tuple[str, ...]] = {}
        candidates = getattr(pipeline.model, "candidates", None)
        self.similarity_bound = (
            self.dummies.max_similarity
            if self.dummies.max_similarity is not None
            else getattr(candidates, "max_similarity", None)
        )
        self._frames_above: dict[int, int] = {}  # track id -> consecutive frames above the bound
        self.re_searches: dict[int, int] = {}  # track id -> searches run after its first frame
        self.switches: dict[int, int] = {}  # track id -> dummies it switched to
        self.small_face_frames: dict[int, int] = {}  # track id -> frames given the small-face filter
        self.turned_face_frames: dict[int, int] = {}  # track id -> frames the model filtered (turned away)
        self._small: set[int] = set()  # tracks currently given the small-face filter
        self._turned: set[int] = set()  # tracks the model filtered as turned away on their last frame
        self._turned_views: dict[int, G2FacePipeline] = {}  # id(pipeline) -> its view for them
        self.detector = detector or YuNetDetector(score_threshold=self.policy.min_score)
        self.tracker = FaceTracker(
            rate,
            confirm_score=self.policy.confirm_score,
            max_predicted=self.policy.max_predicted,
            max_lost=self.policy.max_lost,
            smooth=self.policy.smooth,
        )

    def track_seed(self, track_id: int, attempt: int = 0) -> int:
        """The keyed seed a track's dummy search starts from: attempt 0 on its first frame, attempt
        n for its n-th re-search."""
        return kdf.dummy_seed(self._seed_key, track_id, attempt)

    def process(self, rgb: np.ndarray, index: int) -> AnonymizedFrame:
        update = self.tracker.update(self.detector.detect(rgb), index)
        active = [f for f in update.faces if f.state != "lost"]
        risky: list[tuple[FaceDetection, str]] = [
            (f.detection, "track lost") for f in update.faces if f.state == "lost"
        ]
        risky += [(d, "low-confidence detection") for d in update.unconfirmed]
        image, regions, similarity, methods, re_searches = rgb, [], {}, {}, []
        covered = np.zeros(rgb.shape[:2], bool)
        if active:
            try:
                anonymized = self._anonymize(rgb, active)
                re_searches = self._re_search(rgb, active, anonymized[2], index)
            except Exception as e:  # noqa: BLE001 - fail closed on any anonymizer failure, and report it
                risky += [(f.detection, f"anonymizer failed: {type(e).__name__}: {e}") for f in active]
            else:
                image, footprints, similarity, methods = anonymized
                for fp in footprints:
                    if fp is not None and fp.mask.any():
                        x0, y0, x1, y1 = fp.box
                        covered[y0:y1, x0:x1] |= fp.mask
                        regions.append(Region.from_image(rgb, fp.mask, fp.x0, fp.y0))
                # A detected face must lie inside what was anonymized: the smoothed place can miss
                # it (a tracking error); then the detection itself is covered, and reported.
                risky += [
                    (f.raw, "anonymized place missed the detected face")
                    for f in active
                    if f.raw is not None and not landmarks_covered(covered, f.raw)
                ]
        fail_closed = []
        for detection, reason in risky:
            box = _padded_box(detection, self.policy.padding, rgb.shape)
            if box is None:
                continue
            image = self._blur(image if image is not rgb else rgb.copy(), box)
            x0, y0, x1, y1 = box
            covered[y0:y1, x0:x1] = True
            regions.append(Region.from_image(rgb, np.ones((y1 - y0, x1 - x0), bool), x0, y0))
            fail_closed.append({"frame": index, "reason": reason, "box": list(box)})
        container = None
        if self.seal and regions:
            binding = self.chain.binding(index)
            container = seal_regions(
                regions, self.secret, rgb.shape, image_salt=self.image_salt, associated_data=binding
            )
        faces = tuple(
            {"track": f.track.id, "state": f.state, "box": [round(v, 1) for v in f.detection.box]}
            | ({"method": methods[f.track.id]} if f.track.id in methods else {})
            | ({"whole_region": True} if f.track.id in self.whole_region_tracks else {})
            | (
                {"similarity": round(similarity[f.track.id], 4)}
                if similarity.get(f.track.id) is not None
                else {}
            )
            for f in update.faces
        )
        return AnonymizedFrame(image, container, covered, faces, tuple(fail_closed), tuple(re_searches))

    def seal_end(self, binding: bytes) -> bytes:
        """The sidecar's end record (`io.sidecar.end_binding`): an empty container, so that only
        the key's holder can close the chain of records, and a cut or shortened sidecar shows."""
        return seal_regions([], self.secret, (1, 1, 3), image_salt=self.image_salt, associated_data=binding)

    def _is_small(self, face: TrackedFace) -> bool:
        small = is_small_face(face.detection.width, self.dummies.min_face, face.track.id in self._small)
        if small:
            self._small.add(face.track.id)
        else:
            self._small.discard(face.track.id)
        return small

    def _anonymize(
        self, rgb: np.ndarray, active: list[TrackedFace]
    ) -> tuple[np.ndarray, list[Footprint], dict[int, float | None], dict[int, str]]:
        """Anonymize the active faces: a track seen before renders its chosen dummy as is
        (`search=False`: one fake identity for the track, one render per face-frame); a new track
        gets the model's candidate search from its keyed seed, and keeps what it chose; a small
        track gets the classic filter. Also returns each track's identity cosine to its original
        face (the anonymizer's recognizer, None for a classic filter) and what replaced it."""
        image, footprints, similarity, methods = rgb, [], {}, {}
        small_ids = {f.track.id for f in active if self._is_small(f)}
        small = [f for f in active if f.track.id in small_ids]
        rendered = [f for f in active if f.track.id not in small_ids]
        known = [f for f in rendered if f.track.id in self.dummy_seeds]
        whole = [f for f in known if f.track.id in self.whole_region_tracks]
        known = [f for f in known if f.track.id not in self.whole_region_tracks]
        new = [f for f in rendered if f.track.id not in self.dummy_seeds]
        # min_face=inf: every face of that call gets the pipeline's small-face filter
        calls = [
            (known, self.pipeline, False, 0.0),
            (whole, self.whole_pipeline, False, 0.0),
            (new, self.search_pipeline, True, 0.0),
        ]
        # tracks filtered as turned away on their last frame go through a stricter yaw bound
        calls = [
            (part, self._turned_view(pipeline) if turned else pipeline, search, min_face)
            for faces, pipeline, search, min_face in calls
            for turned in (True, False)
            if (part := [f for f in faces if (f.track.id in self._turned) == turned])
        ]
        calls.append((small, self.pipeline, False, math.inf))
        for faces, pipeline, search, min_face in calls:
            if not faces:
                continue
            seeds = [self.dummy_seeds.get(f.track.id, self.track_seed(f.track.id)) for f in faces]
            anon = pipeline.anonymize(
                image,
                self.secret,
                seeds=seeds,
                detections=[f.detection for f in faces],
                search=search,
                min_face=min_face,
                small_faces=self.dummies.small_faces,
                payload_bits=[self.track_payloads.get(f.track.id) for f in faces],
                image_salt=self.image_salt,
            )
            image = anon.image
            for f, face in zip(faces, anon.faces, strict=True):
                if face.payload_bits is not None and self.pipeline.carriers.pixel_payload:
                    self.track_payloads.setdefault(f.track.id, face.payload_bits)
                # a filtered face (small, or turned too far for the model) chose no dummy: its
                # track searches once rendered
                if min_face != 0.0:
                    self.small_face_frames[f.track.id] = self.small_face_frames.get(f.track.id, 0) + 1
                elif face.fallback_reason is not None:
                    self.turned_face_frames[f.track.id] = self.turned_face_frames.get(f.track.id, 0) + 1
                    self._turned.add(f.track.id)
                else:
                    self._turned.discard(f.track.id)
                    self.dummy_seeds[f.track.id] = face.dummy_seed
                    if face.whole_region:
                        self.whole_region_tracks.add(f.track.id)
                if face.shortfalls:
                    self.review_frames[f.track.id] = self.review_frames.get(f.track.id, 0) + 1
                    self.review.setdefault(f.track.id, face.shortfalls)
                footprints.append(face.footprint)
                similarity[f.track.id] = face.similarity
                methods[f.track.id] = face.method
        return image, footprints, similarity, methods

    def _turned_view(self, pipeline: G2FacePipeline) -> G2FacePipeline:
        """`pipeline` with its model's yaw bound lowered by `DummyPolicy.turned_hysteresis`
        (unchanged for a model without one)."""
        key = id(pipeline)
        if key not in self._turned_views:
            fusion = getattr(pipeline.model, "fusion", None)
            max_yaw = getattr(fusion, "max_yaw", None)
            self._turned_views[key] = (
                pipeline
                if max_yaw is None or self.dummies.turned_hysteresis == 0
                else _with_model_view(
                    pipeline, "with_fusion", max_yaw=max(max_yaw - self.dummies.turned_hysteresis, 1.0)
                )
            )
        return self._turned_views[key]

    def _re_search(
        self, rgb: np.ndarray, active: list[TrackedFace], similarity: dict[int, float | None], index: int
    ) -> list[dict]:
        """Count each rendered track's frames above the similarity bound; a track that stays above
        for `re_search_after` frames searches again from its next keyed seed on this frame's
        original, and takes the new dummy from the next frame on if it is further from the original
        (by `min_gain`). This frame keeps the render already made: the search's image is not used."""
        if self.similarity_bound is None or self.dummies.max_re_searches == 0:
            return []
        due = []
        for f in active:
            value = similarity.get(f.track.id)
            if value is None:  # a filtered face: nothing to compare
                self._frames_above.pop(f.track.id, None)
                continue
            above = self._frames_above.get(f.track.id, 0) + 1 if value > self.similarity_bound else 0
            self._frames_above[f.track.id] = above
            if above >= self.dummies.re_search_after and (
                self.re_searches.get(f.track.id, 0) < self.dummies.max_re_searches
            ):
                due.append(f)
        if not due:
            return []
        attempts = [self.re_searches.get(f.track.id, 0) + 1 for f in due]
        trial = self.search_pipeline.anonymize(
            rgb,
            self.secret,
            seeds=[self.track_seed(f.track.id, n) for f, n in zip(due, attempts, strict=True)],
            detections=[f.detection for f in due],
            search=True,
            image_salt=self.image_salt,
        )
        events = []
        for f, attempt, face in zip(due, attempts, trial.faces, strict=True):
            track = f.track.id
            before, after = similarity[track], face.similarity
            switched = after is not None and after <= before - self.dummies.min_gain
            if switched:
                self.dummy_seeds[track] = face.dummy_seed
                # the new dummy starts over: whole region only if its own search needed it
                self.whole_region_tracks.discard(track)
                if face.whole_region:
                    self.whole_region_tracks.add(track)
                self.switches[track] = self.switches.get(track, 0) + 1
            self.re_searches[track] = attempt
            self._frames_above[track] = 0
            events.append(
                {
                    "frame": index,
                    "track": track,
                    "attempt": attempt,
                    "similarity_before": round(before, 4),
                    "similarity_after": None if after is None else round(after, 4),
                    "switched": switched,
                }
            )
        return events

    def _blur(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        sigma = max(1.0, self.policy.blur_sigma * max(x1 - x0, y1 - y0))
        # blur a margin around the box too, so the box edge does not keep sharp face pixels
        m = int(np.ceil(2 * sigma))
        X0, Y0, X1, Y1 = (
            max(0, x0 - m),
            max(0, y0 - m),
            min(image.shape[1], x1 + m),
            min(image.shape[0], y1 + m),
        )
        blurred = cv2.GaussianBlur(image[Y0:Y1, X0:X1], (0, 0), sigma)
        image[y0:y1, x0:x1] = blurred[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0]
        return image


@dataclass
class VideoReport:
    """What `anonymize_video` / `recover_video` did, JSON-ready via `to_dict`."""

    input: str
    output: str
    frames: int = 0
    face_frames: int = 0  # tracked faces anonymized (seen or predicted), summed over frames
    audio_packets: int = 0
    sidecar: str | None = None
    tracks: list[dict] = field(default_factory=list)
    fail_closed: list[dict] = field(default_factory=list)
    re_searches: list[dict] = field(default_factory=list)  # a track's dummy search run again (DummyPolicy)
    recovery: dict | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def anonymize_video(
    pipeline: G2FacePipeline,
    source: str | Path,
    target: str | Path,
    secret: Secret,
    *,
    sidecar: bool = True,
    pixel_payload: bool = False,
    policy: FailClosedPolicy | None = None,
    dummies: DummyPolicy | None = None,
    encoder: EncoderSettings | None = None,
    force: bool = False,
    progress: bool = True,
) -> VideoReport:
    """Anonymize every face of a clip into `target` (audio copied, timestamps kept) and, unless
    `sidecar` is False, write the per-frame exact-recovery containers to `<target>.g2face`.
    `pixel_payload`: see `VideoAnonymizer`; `dummies`: re-search and small faces (`DummyPolicy`)."""
    source, target = Path(source), Path(target)
    info = probe_video(source)
    anonymizer = VideoAnonymizer(
        pipeline,
        secret,
        rate=_frame_rate(info),
        policy=policy,
        dummies=dummies,
        seal=sidecar,
        pixel_payload=pixel_payload,
    )
    report = VideoReport(str(source), str(target), sidecar=str(sidecar_path(target)) if sidecar else None)
    report.details = {
        "policy": dataclasses.asdict(anonymizer.policy),
        "dummies": dataclasses.asdict(anonymizer.dummies) | {"similarity_bound": anonymizer.similarity_bound},
        "method": _method(pipeline),
    }

    def run(add_container) -> None:
        def process(frame: VideoFrame) -> np.ndarray:
            result = anonymizer.process(frame.rgb, frame.index)
            if result.container is not None:
                add_container(frame.index, result.container)
            report.face_frames += sum(f["state"] != "lost" for f in result.faces)
            report.fail_closed.extend({**e, "time": frame.time} for e in result.fail_closed)
            report.re_searches.extend({**e, "time": frame.time} for e in result.re_searches)
            return result.image

        summary = transcode_video(source, target, process, encoder=encoder, force=force, progress=progress)
        report.frames, report.audio_packets = summary.frames, summary.audio_packets
        report.details |= {"encoder": summary.encoder, "rotation": info.rotation}

    if sidecar:
        header = {
            "width": info.width,
            "height": info.height,
            "rotation": info.rotation,
            "frames": info.frames,
        }
        write_sidecar(
            sidecar_path(target),
            header,
            anonymizer.clip_id,
            lambda writer: run(writer.add),
            anonymizer.seal_end,
            protected=[source],
            force=force,
        )
    else:
        run(lambda index, blob: None)
    report.tracks = [
        {
            "id": t.id,
            "first_frame": t.first_frame,
            "frames_detected": t.seen,
            "frames_predicted": t.predicted,
            "frames_fail_closed": t.lost_frames,
            "frames_small_face_filter": anonymizer.small_face_frames.get(t.id, 0),
            "frames_turned_face_filter": anonymizer.turned_face_frames.get(t.id, 0),
            "re_searches": anonymizer.re_searches.get(t.id, 0),
            "dummy_switches": anonymizer.switches.get(t.id, 0),
            "frames_to_review": anonymizer.review_frames.get(t.id, 0),
        }
        | ({"review": list(anonymizer.review[t.id])} if t.id in anonymizer.review else {})
        for t in anonymizer.tracker.all_tracks()
    ]
    return report


def _method(pipeline: G2FacePipeline) -> str:
    return getattr(pipeline.model, "method", "g2face")


@dataclass
class TrackPayloads:
    """What the reading pass of `recover_video` found in a clip without its sidecar: per face-frame
    (frame index, track id) the identity its own pixels carried (verified), and per track the
    identity most of its verified frames carried (one payload per track, `VideoAnonymizer`), for
    the frames whose own payload lossy coding destroyed."""

    own: dict[tuple[int, int], int] = field(default_factory=dict)  # -> index in `identities`
    track: dict[int, int] = field(default_factory=dict)  # track id -> index in `identities`
    identities: list[np.ndarray] = field(default_factory=list)  # each distinct identity once
    face_frames: int = 0
    unverified: int = 0  # payloads that decoded but did not verify (another secret)
    rate: float = 25.0  # the clip's frame rate, which the tracker was given (the second pass's too)

    def identity_of(self, frame: int, track: int) -> tuple[np.ndarray, bool] | None:
        """(identity, from this face-frame's own payload) or None when neither it nor its track
        carried a verified one."""
        index = self.own.get((frame, track))
        if index is not None:
            return self.identities[index], True
        index = self.track.get(track)
        return None if index is None else (self.identities[index], False)


def _frame_rate(info: VideoInfo) -> float:
    """The clip's frame rate for the tracker (25 where the container does not say)."""
    return float(info.rate) if info.rate else 25.0


def _recovery_tracker(rate: float, policy: FailClosedPolicy) -> tuple[YuNetDetector, FaceTracker]:
    """The detector and tracker both passes of `recover_video` run (the same, so the same ids)."""
    detector = YuNetDetector(score_threshold=policy.min_score)
    tracker = FaceTracker(
        rate,
        confirm_score=policy.confirm_score,
        max_predicted=policy.max_predicted,
        max_lost=policy.max_lost,
        smooth=policy.smooth,
    )
    return detector, tracker


def read_track_payloads(
    pipeline: G2FacePipeline,
    source: str | Path,
    secret: Secret,
    *,
    policy: FailClosedPolicy | None = None,
    progress: bool = True,
) -> TrackPayloads:
    """Track the faces of an anonymized clip and read every detected face's in-pixel payload; each
    track's identity is the one most of its verified payloads carry (they are all the same unless
    the tracker joined two people)."""
    info = probe_video(source)
    found = TrackPayloads(rate=_frame_rate(info))
    detector, tracker = _recovery_tracker(found.rate, policy or FailClosedPolicy())
    codec = pipeline.model.codec
    # (a model that hides its payload in its crops has no pixel carrier; its clips made with a
    # classic --method carry the default one)
    carrier = pipeline.pixel_carrier or DctQimCarrier(codec.n_bits)
    index_of: dict[bytes, int] = {}
    votes: dict[int, dict[int, int]] = {}  # track id -> identity index -> verified face-frames
    frames = tqdm(
        read_frames(source),
        total=info.frames or None,
        desc="reading payloads",
        unit="frame",
        disable=not progress,
    )
    for frame in frames:
        update = tracker.update(detector.detect(frame.rgb), frame.index)
        for face in update.faces:
            if face.raw is None:
                continue
            found.face_frames += 1
            # the clip's own scale only: the search over resized scales costs 1-2 s more on every
            # face-frame where nothing decodes (most frames of a coded clip)
            payload = read_payload(frame.rgb, face.raw, codec, secret, carrier, search_resized=False)
            if payload is None:
                continue
            if not payload.verified:
                found.unverified += 1
                continue
            identity = np.asarray(payload.embedding, np.float32)
            index = index_of.setdefault(identity.tobytes(), len(found.identities))
            if index == len(found.identities):
                found.identities.append(identity)
            found.own[(frame.index, face.track.id)] = index
            track_votes = votes.setdefault(face.track.id, {})
            track_votes[index] = track_votes.get(index, 0) + 1
    found.track = {track: max(v, key=v.get) for track, v in votes.items()}
    return found


def _check_sidecar_end(reader: SidecarReader, secret: Secret, source: Path, report: VideoReport) -> bool:
    """Whether a version-3 sidecar's end record is there and opens (a wrong secret raises before
    anything is written); if not, a clip-level fail-closed entry says that records after the last
    one left may be gone."""
    end = reader.end_record()
    why = "it is missing: the sidecar was cut short"
    if end is not None:
        try:
            open_container(end[0], secret, associated_data=end[1])
            return True
        except WrongSecretError:
            raise UnverifiedRecoveryError(
                f"{source}: wrong password or key file for this clip's sidecar; nothing written"
            ) from None
        except ContainerError as e:
            why = f"{e}"
    last = reader.frames[-1] if reader.frames else None
    report.fail_closed.append(
        {
            "frame": None,
            "reason": f"the sidecar's end record: {why}; records after frame {last} may have been removed",
        }
    )
    return False


def recover_video(
    pipeline: G2FacePipeline,
    source: str | Path,
    target: str | Path,
    secret: Secret,
    *,
    sidecar: str | Path | None = None,
    allow_unverified: bool = False,
    encoder: EncoderSettings | None = None,
    force: bool = False,
    progress: bool = True,
    refine: int = 0,
) -> VideoReport:
    """Recover a clip anonymized by `anonymize_video`. With its sidecar every frame's changed
    regions get their original decoded pixels back exactly (the rest of the frame is the anonymized
    clip's, re-encoded: lossy unless `encoder.lossless`); without one, the in-pixel payloads
    (identity level, when the clip was anonymized with them): a first pass tracks the faces and
    reads every face-frame's payload, a second renders each face with the identity its own pixels
    carried or, where lossy coding destroyed that, its track's (`read_track_payloads`), `refine`
    optimisation steps towards each identity first (once per identity, reused on its every frame,
    where the model can). A wrong secret writes nothing."""
    source, target = Path(source), Path(target)
    report = VideoReport(str(source), str(target), sidecar=None if sidecar is None else str(sidecar))
    counts = {"exact_frames": 0, "damaged_frames": 0, "identity_faces": 0, "unverified_faces": 0}
    reader = SidecarReader(sidecar) if sidecar is not None else None
    payloads: TrackPayloads | None = None
    removed: dict[int, str] = {}  # frames whose sidecar record was deleted (`SidecarReader.removed`)
    try:
        if reader is not None:
            info = probe_video(source)
            if (reader.header.get("width"), reader.header.get("height")) != (info.width, info.height):
                raise InputError(
                    f"{sidecar}: made for a {reader.header.get('width')}x{reader.header.get('height')} clip, "
                    f"{source} is {info.width}x{info.height}; give the sidecar of this clip"
                )
            removed = reader.removed()
            if reader.version >= 3:
                counts["sidecar_complete"] = _check_sidecar_end(reader, secret, source, report)
        else:
            payloads = read_track_payloads(pipeline, source, secret, progress=progress)
            counts["unverified_faces"] = payloads.unverified
            if not payloads.identities and pipeline.model.payload_in_crops and not payloads.unverified:
                payloads = None  # a learned model's own payload is read from its crops, frame by frame
            elif not payloads.identities and not allow_unverified:
                raise UnverifiedRecoveryError(
                    f"{source}: no face's in-pixel payload verified "
                    + (
                        "(wrong password or key file?)"
                        if payloads.unverified
                        else "(anonymized without --pixel-payload, or lost to video coding; give the "
                        "--container sidecar)"
                    )
                    + "; nothing written"
                )
            if payloads is not None:
                detector, tracker = _recovery_tracker(payloads.rate, FailClosedPolicy())
                counts |= {"own_payload_faces": 0, "track_payload_faces": 0}
                counts["tracks_recovered"] = len(payloads.track)

        def process(frame: VideoFrame) -> np.ndarray:
            blob = reader.get(frame.index) if reader is not None else None
            if blob is not None:
                try:
                    opened = open_container(blob, secret, associated_data=reader.binding(frame.index))
                    restored = restore_regions(frame.rgb, opened)
                except WrongSecretError:
                    raise UnverifiedRecoveryError(
                        f"{source}: wrong password or key file for this clip's sidecar; nothing written"
                    ) from None
                except ContainerError as e:
                    counts["damaged_frames"] += 1
                    report.fail_closed.append({"frame": frame.index, "reason": f"container: {e}"})
                    return frame.rgb
                counts["exact_frames"] += 1
                return restored
            if frame.index in removed:
                counts["damaged_frames"] += 1
                report.fail_closed.append({"frame": frame.index, "reason": removed[frame.index]})
                return frame.rgb
            if reader is not None:
                return frame.rgb  # nothing was changed in this frame
            if payloads is not None:
                update = tracker.update(detector.detect(frame.rgb), frame.index)
                known = [
                    (face.raw, found)
                    for face in update.faces
                    if face.raw is not None
                    and (found := payloads.identity_of(frame.index, face.track.id)) is not None
                ]
                counts["identity_faces"] += len(known)
                counts["own_payload_faces"] += sum(own for _, (_, own) in known)
                counts["track_payload_faces"] += sum(not own for _, (_, own) in known)
                return pipeline.render_identities(
                    frame.rgb, [d for d, _ in known], [identity for _, (identity, _) in known], refine
                )
            back = pipeline.recover(frame.rgb, secret)  # a model that carries the payload in its crops
            counts["identity_faces"] += sum(f.path == "identity" for f in back.faces)
            counts["unverified_faces"] += sum(not f.verified and f.error is None for f in back.faces)
            return back.image

        summary = transcode_video(source, target, process, encoder=encoder, force=force, progress=progress)
        if reader is None and counts["identity_faces"] == 0 and not allow_unverified:
            target.unlink()
            raise UnverifiedRecoveryError(
                f"{source}: no face's in-pixel payload verified (lossy video coding destroys it; give the "
                "--container sidecar); nothing written"
            )
    finally:
        if reader is not None:
            reader.close()
    report.frames, report.audio_packets = summary.frames, summary.audio_packets
    report.recovery = counts | {"path": "exact (sidecar)" if reader is not None else "identity (in-pixel)"}
    return report
