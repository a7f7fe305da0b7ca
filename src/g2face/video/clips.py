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
import secrets as random_bytes
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from g2face.detection import YuNetDetector
from g2face.io.sidecar import SidecarReader, frame_binding, new_clip_id, sidecar_path, write_sidecar
from g2face.io.video import EncoderSettings, VideoFrame, probe_video, transcode_video
from g2face.payload import Secret, kdf
from g2face.payload.carriers import (
    ContainerError,
    Region,
    WrongSecretError,
    open_container,
    restore_regions,
    seal_regions,
)
from g2face.pipeline.g2face import G2FacePipeline, UnverifiedRecoveryError
from g2face.types import FaceDetection, Footprint, InputError
from g2face.video.tracking import FaceTracker, TrackedFace

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


@dataclass(frozen=True, eq=False)
class AnonymizedFrame:
    image: np.ndarray
    container: bytes | None  # the original pixels of every changed region, sealed
    covered: np.ndarray  # bool [H, W]: pixels anonymized or blurred (metrics)
    faces: tuple[dict, ...]  # per tracked face: track id, state, box, similarity if known (JSON-ready)
    fail_closed: tuple[dict, ...]  # per blurred place: reason, box


def clip_seed_key(secret: Secret, clip_salt: bytes) -> bytes:
    """The master key the clip's per-track dummy seeds come from (the payload KDF: scrypt for a
    password, HKDF for a key file)."""
    return kdf.master_key(secret, clip_salt, kdf.default_kdf_id(secret))


def landmarks_covered(covered: np.ndarray, detection: FaceDetection) -> bool:
    """Whether all 5 landmarks of `detection` lie on covered (anonymized or blurred) pixels."""
    height, width = covered.shape
    points = np.clip(np.round(detection.points).astype(int), 0, [width - 1, height - 1])
    return bool(covered[points[:, 1], points[:, 0]].all())


def _padded_box(d: FaceDetection, padding: float, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    w, h = d.width, d.height
    x0 = max(0, int(np.floor(d.box[0] - padding * w)))
    y0 = max(0, int(np.floor(d.box[1] - padding * h)))
    x1 = min(shape[1], int(np.ceil(d.box[2] + padding * w)))
    y1 = min(shape[0], int(np.ceil(d.box[3] + padding * h)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


class VideoAnonymizer:
    """Stateful per clip: feed the frames in order to `process`."""

    def __init__(
        self,
        pipeline: G2FacePipeline,
        secret: Secret,
        *,
        rate: float = 25.0,
        policy: FailClosedPolicy | None = None,
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
        self.clip_id = new_clip_id()  # the sidecar's records are sealed for (clip id, frame index)
        self.dummy_seeds: dict[int, int] = {}  # track id -> the dummy seed its first frame chose
        self.detector = detector or YuNetDetector(score_threshold=self.policy.min_score)
        self.tracker = FaceTracker(
            rate,
            confirm_score=self.policy.confirm_score,
            max_predicted=self.policy.max_predicted,
            max_lost=self.policy.max_lost,
            smooth=self.policy.smooth,
        )

    def track_seed(self, track_id: int) -> int:
        """The keyed seed a new track's dummy search starts from."""
        return kdf.dummy_seed(self._seed_key, track_id)

    def process(self, rgb: np.ndarray, index: int) -> AnonymizedFrame:
        update = self.tracker.update(self.detector.detect(rgb), index)
        active = [f for f in update.faces if f.state != "lost"]
        risky: list[tuple[FaceDetection, str]] = [
            (f.detection, "track lost") for f in update.faces if f.state == "lost"
        ]
        risky += [(d, "low-confidence detection") for d in update.unconfirmed]
        image, regions, similarity = rgb, [], {}
        covered = np.zeros(rgb.shape[:2], bool)
        if active:
            try:
                image, footprints, similarity = self._anonymize(rgb, active)
            except Exception as e:  # noqa: BLE001 - fail closed on any anonymizer failure, and report it
                risky += [(f.detection, f"anonymizer failed: {type(e).__name__}: {e}") for f in active]
            else:
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
            binding = frame_binding(self.clip_id, index)
            container = seal_regions(regions, self.secret, rgb.shape, associated_data=binding)
        faces = tuple(
            {"track": f.track.id, "state": f.state, "box": [round(v, 1) for v in f.detection.box]}
            | (
                {"similarity": round(similarity[f.track.id], 4)}
                if similarity.get(f.track.id) is not None
                else {}
            )
            for f in update.faces
        )
        return AnonymizedFrame(image, container, covered, faces, tuple(fail_closed))

    def _anonymize(
        self, rgb: np.ndarray, active: list[TrackedFace]
    ) -> tuple[np.ndarray, list[Footprint], dict[int, float | None]]:
        """Anonymize the active faces: a track seen before renders the dummy chosen on its first
        frame as is (`search=False`: one fake identity for the track, one render per face-frame); a
        new track gets the model's candidate search from its keyed seed, and keeps what it chose.
        Also returns each track's identity cosine to its original face (the anonymizer's
        recognizer, None for a classic filter)."""
        image, footprints, similarity = rgb, [], {}
        known = [f for f in active if f.track.id in self.dummy_seeds]
        new = [f for f in active if f.track.id not in self.dummy_seeds]
        for faces, search in ((known, False), (new, True)):
            if not faces:
                continue
            seeds = [self.dummy_seeds.get(f.track.id, self.track_seed(f.track.id)) for f in faces]
            anon = self.pipeline.anonymize(
                image, self.secret, seeds=seeds, detections=[f.detection for f in faces], search=search
            )
            image = anon.image
            for f, face in zip(faces, anon.faces, strict=True):
                self.dummy_seeds[f.track.id] = face.dummy_seed
                footprints.append(face.footprint)
                similarity[f.track.id] = face.similarity
        return image, footprints, similarity

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
    encoder: EncoderSettings | None = None,
    force: bool = False,
    progress: bool = True,
) -> VideoReport:
    """Anonymize every face of a clip into `target` (audio copied, timestamps kept) and, unless
    `sidecar` is False, write the per-frame exact-recovery containers to `<target>.g2face`.
    `pixel_payload`: see `VideoAnonymizer`."""
    source, target = Path(source), Path(target)
    info = probe_video(source)
    rate = float(info.rate) if info.rate else 25.0
    anonymizer = VideoAnonymizer(
        pipeline, secret, rate=rate, policy=policy, seal=sidecar, pixel_payload=pixel_payload
    )
    report = VideoReport(str(source), str(target), sidecar=str(sidecar_path(target)) if sidecar else None)
    report.details = {"policy": dataclasses.asdict(anonymizer.policy), "method": _method(pipeline)}

    def run(add_container) -> None:
        def process(frame: VideoFrame) -> np.ndarray:
            result = anonymizer.process(frame.rgb, frame.index)
            if result.container is not None:
                add_container(frame.index, result.container)
            report.face_frames += sum(f["state"] != "lost" for f in result.faces)
            report.fail_closed.extend({**e, "time": frame.time} for e in result.fail_closed)
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
        }
        for t in anonymizer.tracker.all_tracks()
    ]
    return report


def _method(pipeline: G2FacePipeline) -> str:
    return getattr(pipeline.model, "method", "g2face")


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
) -> VideoReport:
    """Recover a clip anonymized by `anonymize_video`. With its sidecar every frame's changed
    regions get their original decoded pixels back exactly (the rest of the frame is the anonymized
    clip's, re-encoded: lossy unless `encoder.lossless`); without one, each face's in-pixel payload
    (identity level; rarely survives lossy video coding). A wrong secret writes nothing."""
    source, target = Path(source), Path(target)
    report = VideoReport(str(source), str(target), sidecar=None if sidecar is None else str(sidecar))
    counts = {"exact_frames": 0, "damaged_frames": 0, "identity_faces": 0, "unverified_faces": 0}
    reader = SidecarReader(sidecar) if sidecar is not None else None
    try:
        if reader is not None:
            info = probe_video(source)
            if (reader.header.get("width"), reader.header.get("height")) != (info.width, info.height):
                raise InputError(
                    f"{sidecar}: made for a {reader.header.get('width')}x{reader.header.get('height')} clip, "
                    f"{source} is {info.width}x{info.height}; give the sidecar of this clip"
                )

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
            if reader is not None:
                return frame.rgb  # nothing was changed in this frame
            back = pipeline.recover(frame.rgb, secret)
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
