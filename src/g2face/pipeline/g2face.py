"""G2FacePipeline: anonymize and recover every face of whole photos with any `FaceAnonymizer`.

Anonymize: detect → align → anonymizer (crops, masks, the encrypted identity of each face) →
multi-band paste → recovery carriers:
* the in-pixel payload: each face's encrypted identity frame in its own 8×8 DCT blocks (survives
  metadata stripping and JPEG; identity-level recovery), for anonymizers that do not hide the
  payload themselves (the learned model's E_p path does);
* the exact-recovery container: the original pixels of every changed region, encrypted, as a block
  inside the output file (exact recovery while the file is kept as written).
Recover: the container if present and intact → else, per face, the in-pixel (or in-network)
payload → the original identity rendered back at the anonymized face's pose and expression.
Pixels outside every face's paste mask are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from g2face.align import align_face, blend_faces, crop_source_width, face_mask, seen_in_profile
from g2face.detection import FaceDetector, YuNetDetector
from g2face.io import ExpandedInputs, InputFile, check_output_free, read_image, write_image
from g2face.models.base import AnonymizedFaces, FaceAnonymizer
from g2face.models.classic import ClassicAnonymizer
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.payload import PayloadError, Secret, kdf
from g2face.payload.carriers import (
    ContainerError,
    DctQimCarrier,
    FaceTooSmallError,
    Region,
    WrongSecretError,
    open_container,
    read_payload,
    restore_regions,
    seal_regions,
)
from g2face.payload.codec import SALT_BYTES as PAYLOAD_SALT_BYTES
from g2face.pipeline.batch import (
    BatchReport,
    FileOutcome,
    check_output_target,
    free_output_target,
    process_each,
)
from g2face.pipeline.detect import NoFaceError
from g2face.pipeline.faces import FacePipeline
from g2face.pipeline.review import REVIEW_SUFFIX, review_sheet
from g2face.pipeline.selection import SMALL_FACE_METHODS, FaceMatch, FaceSelector
from g2face.types import FaceDetection, Footprint, InputError

RecoveryPath = Literal["exact", "identity"]


@dataclass(frozen=True)
class CarrierSettings:
    """Which recovery carriers anonymize writes."""

    container: bool = True
    """The exact-recovery container (needs an output format that can hold it: PNG, JPEG, WebP)."""
    pixel_payload: bool = True
    """The in-pixel identity payload (for anonymizers that do not carry it themselves)."""


@dataclass(frozen=True)
class AnonymizedFace:
    detection: FaceDetection
    dummy_seed: int
    footprint: Footprint
    pixel_payload: bool  # whether the face's own pixels carry its encrypted identity
    similarity: float | None = None  # identity cosine to the original (the anonymizer's recognizer)
    method: str = "g2face"  # what replaced it: the model, or a classic filter (blur, pixelate, box)
    attributes: dict | None = None  # apparent gender and age, original and fake (AnonymizedFaces)
    whole_region: bool = False  # the fake replaced the whole face region (AnonymizedFaces.whole_region)
    fallback_reason: str | None = None  # why the model gave it a classic filter (AnonymizedFaces.fallbacks)
    payload_bits: np.ndarray | None = None  # uint8 bits of its encrypted identity (its pixels' payload)
    shortfalls: tuple[str, ...] = ()  # what the fake misses of the anonymizer's goals (AnonymizedFaces)


FaceAction = Literal["anonymized", "exempt", "small-face fallback", "turned-face fallback"]


@dataclass(frozen=True)
class FaceDecision:
    """What happened to one detected face."""

    detection: FaceDetection
    action: FaceAction
    method: str | None  # None when exempt (left untouched)
    match: FaceMatch | None  # the identity match against reference people, when a selector was given
    face: AnonymizedFace | None  # None when exempt


@dataclass(frozen=True)
class RecoveredFace:
    detection: FaceDetection | None  # None for a region restored from the container
    verified: bool
    error: PayloadError | None  # why this face was not recovered (left as it was)
    path: RecoveryPath | None = None  # how it was recovered: exact pixels or the identity rendered back


@dataclass(frozen=True, eq=False)
class AnonymizedImage:
    image: np.ndarray
    faces: tuple[AnonymizedFace, ...]
    container: bytes | None = None  # the exact-recovery container, to store with the image
    decisions: tuple[FaceDecision, ...] = ()  # every detected face in detection order, exempt ones too


@dataclass(frozen=True, eq=False)
class RecoveredImage:
    image: np.ndarray
    faces: tuple[RecoveredFace, ...]
    container_error: ContainerError | None = None  # why the container was not used, if there was one

    @property
    def verified(self) -> bool:
        """Every face that carried a payload was recovered with the right secret."""
        readable = [f for f in self.faces if f.error is None]
        return bool(readable) and all(f.verified for f in readable)


class UnverifiedRecoveryError(InputError):
    """Recovery did not verify (wrong secret or damaged payload); nothing was written."""


def _secret(secret: Secret | str) -> Secret:
    return Secret.from_password(secret) if isinstance(secret, str) else secret


def default_batch_size(device: torch.device) -> int:
    """Faces per forward pass. On a CPU one at a time is as fast and far lighter (lite, 2 cores:
    481 ms per face and 1.2 GB peak at batch 1, 506 ms and 6.9 GB at batch 8)."""
    return 8 if device.type == "cuda" else 1


class G2FacePipeline:
    """Reversible anonymization of whole images. One instance serves many images; it keeps no
    per-image state."""

    def __init__(
        self,
        model: FaceAnonymizer,
        detector: FaceDetector | None = None,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        carriers: CarrierSettings | None = None,
    ):
        self.device = torch.device(device)
        self.model = model
        if isinstance(model, torch.nn.Module):
            model.to(self.device).eval()
        self.detector = detector if detector is not None else YuNetDetector()
        self.batch_size = batch_size or default_batch_size(self.device)
        self.carriers = carriers or CarrierSettings()
        self.pixel_carrier = DctQimCarrier(model.codec.n_bits) if not model.payload_in_crops else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "g2face-lite",
        *,
        device: str = "cpu",
        method: str = "g2face",
        model_options: dict | None = None,
        backend: str = "torch",
        **kwargs,
    ):
        """A pipeline around a named model of the zoo or a weights file written by training;
        `method` blur / pixelate / box keeps that model's carriers and recovery renderer but
        anonymizes with the classic filter ("reversible blur"). `model_options` go to
        `g2face.models.zoo.load_model` (fusion / candidate settings, attributes). `backend` runs
        the generator in PyTorch or a graph runtime (`g2face.priors.backends`: torch,
        onnxruntime, openvino, auto)."""
        from g2face.models.zoo import load_model
        from g2face.priors.backends import use_backend

        model = use_backend(load_model(name_or_path, device=device, **(model_options or {})), backend)
        if method != "g2face":
            model = ClassicAnonymizer(method, model)
        return cls(model, device=device, **kwargs)

    def _faces(self, transform) -> FacePipeline:
        return FacePipeline(
            self.detector,
            transform,
            crop_size=self.model.image_size,
            batch_size=self.batch_size,
            device=self.device,
        )

    # ----------------------------------------------------------------------------- anonymize

    def anonymize(
        self,
        image: np.ndarray,
        secret: Secret | str,
        *,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
        detections: Sequence[FaceDetection] | None = None,
        selector: FaceSelector | None = None,
        min_face: float = 0,
        small_faces: str = "blur",
        search: bool = True,
        payload_bits: Sequence[np.ndarray | None] | None = None,
        image_salt: bytes | None = None,
    ) -> AnonymizedImage:
        """Replace every face of an RGB uint8 image. The dummy identities come from the secret and
        each face's random salt, unless `seeds` (one per face) or `seed` (face i gets seed + i) fix
        them (a video track keeps its fake identity that way). `search=False` renders those seeds
        as given instead of choosing among keyed candidates (`AnonymizedFace.dummy_seed` is the
        seed rendered: a track passes it back on its next frames).

        `selector` exempts faces by identity (reference people); a face narrower than `min_face`
        pixels gets the classic `small_faces` filter instead of the model (same carriers). Every
        other face is anonymized; `decisions` says what happened to each detected face.

        `payload_bits` (one per face, None for the model's own): channel bits the in-pixel carrier
        hides in that face instead of this frame's fresh payload (`AnonymizedFace.payload_bits` of
        an earlier frame): a video track carries one payload on all its frames, so the pattern is
        the same from frame to frame and any frame that survives coding recovers the track.
        `image_salt` (`kdf.new_image_salt`; default a fresh one): the prefix of every salt of this
        call's payloads and container, under which a password is stretched once; a video passes
        one per clip, so its frames share one stretch instead of running scrypt each."""
        secret = _secret(secret)
        if small_faces not in SMALL_FACE_METHODS:
            known = ", ".join(SMALL_FACE_METHODS)
            raise ValueError(f"small_faces must be one of {known}, got {small_faces!r}")
        detections = list(self.detector.detect(image) if detections is None else detections)
        if seeds is not None and len(seeds) != len(detections):
            raise ValueError(f"{len(seeds)} seeds for {len(detections)} faces")
        if payload_bits is not None and len(payload_bits) != len(detections):
            raise ValueError(f"{len(payload_bits)} payloads for {len(detections)} faces")
        if seeds is None and seed is not None:
            seeds = [seed + i for i in range(len(detections))]
        matches = selector.decide(image, detections) if selector is not None else [None] * len(detections)
        actions: list[FaceAction] = [
            "exempt"
            if match is not None and match.exempt
            else ("small-face fallback" if d.width < min_face else "anonymized")
            for d, match in zip(detections, matches, strict=True)
        ]
        composed = image
        # One image salt in front of every payload's and the container's salt: a password is
        # stretched (scrypt, ~0.4 s) once for the whole image, not once per face.
        image_salt = kdf.new_image_salt() if image_salt is None else image_salt
        made: dict[int, AnonymizedFace] = {}
        for action in ("anonymized", "small-face fallback"):
            indices = [i for i, a in enumerate(actions) if a == action]
            if not indices:
                continue
            model = self.model if action == "anonymized" else self._fallback(small_faces)
            composed, faces = self._replace(
                model,
                composed,
                secret,
                [detections[i] for i in indices],
                None if seeds is None else [seeds[i] for i in indices],
                face_offset=len(made),
                search=search,
                image_salt=image_salt,
                payload_bits=None if payload_bits is None else [payload_bits[i] for i in indices],
            )
            made.update(zip(indices, faces, strict=True))
        container = None
        regions = [
            Region.from_image(image, f.footprint.mask, f.footprint.x0, f.footprint.y0)
            for f in made.values()
            if f.footprint is not None and f.footprint.mask.any()
        ]
        if self.carriers.container and regions:
            container = seal_regions(regions, secret, image.shape, image_salt=image_salt)
        # the model itself gives a face it cannot render (turned too far) a classic filter
        actions = [
            "turned-face fallback" if i in made and made[i].fallback_reason is not None else a
            for i, a in enumerate(actions)
        ]
        decisions = tuple(
            FaceDecision(d, a, None if a == "exempt" else made[i].method, m, made.get(i))
            for i, (d, a, m) in enumerate(zip(detections, actions, matches, strict=True))
        )
        faces = tuple(made[i] for i in sorted(made))
        return AnonymizedImage(composed if made else image.copy(), faces, container, decisions)

    def _fallback(self, method: str) -> FaceAnonymizer:
        """The classic filter for small faces, with this pipeline's model as its identity source."""
        source = self.model.source if isinstance(self.model, ClassicAnonymizer) else self.model
        return ClassicAnonymizer(method, source)

    def _replace(
        self,
        model,
        image,
        secret,
        detections,
        seeds,
        *,
        face_offset: int,
        search: bool,
        image_salt: bytes,
        payload_bits: Sequence[np.ndarray | None] | None = None,
    ):
        """Anonymize `detections` of `image` with `model`; the composed image and one
        `AnonymizedFace` per detection (in-pixel payload embedded where it fits: the model's, or
        `payload_bits` where given)."""
        outputs: list[AnonymizedFaces] = []

        def transform(batch: Tensor):
            done = sum(len(o.salts) for o in outputs)
            fixed = None if seeds is None else list(seeds[done : done + batch.shape[0]])
            salts = [kdf.new_salt(PAYLOAD_SALT_BYTES, image_salt) for _ in range(batch.shape[0])]
            # (the FacePipeline crops the detections in order, one batch after another)
            batch_detections = detections[done : done + batch.shape[0]]
            widths = [crop_source_width(d, model.image_size) for d in batch_detections]
            out = model.anonymize(
                batch,
                secret,
                seeds=fixed,
                salts=salts,
                face_offset=face_offset + done,
                search=search,
                source_widths=widths,
                profiles=[seen_in_profile(d) for d in batch_detections],
            )
            outputs.append(out)
            return out.images, out.masks

        result = self._faces(transform).process(image, detections)
        composed = result.image
        bits = [b for o in outputs for b in o.bits.cpu().numpy().astype(np.uint8)]
        if payload_bits is not None:
            for i, given in enumerate(payload_bits):
                if given is not None:
                    if given.shape != bits[i].shape:
                        raise ValueError(
                            f"a payload of {given.shape[0]} bits, the codec's has {bits[i].shape[0]}"
                        )
                    bits[i] = np.asarray(given, np.uint8)
        dummy_seeds = [s for o in outputs for s in o.dummy_seeds]
        similarities = [s for o in outputs for s in (o.similarities or [None] * len(o.salts))]
        attributes = [a for o in outputs for a in (o.attributes or [None] * len(o.salts))]
        whole = [w for o in outputs for w in (o.whole_region or [False] * len(o.salts))]
        fallbacks = [f for o in outputs for f in (o.fallbacks or [None] * len(o.salts))]
        shortfalls = [m for o in outputs for m in (o.shortfalls or [()] * len(o.salts))]
        carried = [False] * len(result.faces)
        carrier = self.pixel_carrier
        if model.payload_in_crops:
            carrier = None
        elif carrier is None:  # a small-face filter around a model that hides its payload itself
            carrier = DctQimCarrier(model.codec.n_bits)
        if carrier is not None and self.carriers.pixel_payload:
            for i, record in enumerate(result.faces):
                allowed = _full_mask(record.footprint, composed.shape[:2])
                try:
                    composed = carrier.embed(composed, record.detection, allowed, bits[i])
                except FaceTooSmallError:
                    continue  # the container still carries this face
                carried[i] = True
        method = getattr(model, "method", "g2face")
        faces = [
            AnonymizedFace(
                r.detection,
                s,
                r.footprint,
                c,
                sim,
                method if f is None else f.method,
                a,
                w,
                None if f is None else f.reason,
                None if model.payload_in_crops else b,
                m,
            )
            for r, s, c, sim, a, w, f, b, m in zip(
                result.faces,
                dummy_seeds,
                carried,
                similarities,
                attributes,
                whole,
                fallbacks,
                bits,
                shortfalls,
                strict=True,
            )
        ]
        return composed, faces

    # ------------------------------------------------------------------------------- recover

    def recover(
        self,
        image: np.ndarray,
        secret: Secret | str,
        *,
        container: bytes | None = None,
        detections: Sequence[FaceDetection] | None = None,
        refine: int = 0,
    ) -> RecoveredImage:
        """Recover every anonymized face of an image. With the file's `container` (intact, right
        secret) the original pixels come back exactly; a wrong secret is reported as unverified and
        nothing is rendered. Otherwise each face's payload is read from its pixels and the original
        identity rendered back (`refine` optimisation steps towards it first, when the model can);
        faces without a payload are left as they are."""
        secret = _secret(secret)
        container_error: ContainerError | None = None
        if container is not None:
            try:
                opened = open_container(container, secret)
                restored = restore_regions(image, opened)
            except WrongSecretError as e:
                return RecoveredImage(image.copy(), (RecoveredFace(None, False, None, None),), e)
            except ContainerError as e:
                container_error = e  # tampered or resized: fall back to the in-pixel payload
            else:
                faces = tuple(RecoveredFace(None, True, None, "exact") for _ in opened.regions)
                return RecoveredImage(restored, faces)
        if detections is None:
            detections = self.detector.detect(image)
        if self.model.payload_in_crops:
            restored, faces = self._recover_in_crops(image, secret, detections)
        else:
            restored, faces = self._recover_from_pixels(image, secret, detections, refine)
        return RecoveredImage(restored, faces, container_error)

    def _recover_from_pixels(self, image, secret, detections, refine: int = 0):
        decoded = [read_payload(image, d, self.model.codec, secret, self.pixel_carrier) for d in detections]
        faces, render, identities = [], [], []
        for d, payload in zip(detections, decoded, strict=True):
            if payload is None:
                faces.append(RecoveredFace(d, False, PayloadError("no payload found in this face"), None))
                continue
            faces.append(RecoveredFace(d, payload.verified, None, "identity" if payload.verified else None))
            if payload.verified:  # an unverified identity is another person's: never rendered
                render.append(d)
                identities.append(payload.embedding.astype(np.float32))
        return self.render_identities(image, render, identities, refine), tuple(faces)

    def render_identities(
        self,
        image: np.ndarray,
        detections: Sequence[FaceDetection],
        identities: Sequence[np.ndarray],
        refine: int = 0,
    ) -> np.ndarray:
        """`image` with each face (`detections`) rendered back with its decoded identity (one
        embedding per face; `refine` optimisation steps towards it first, when the model can): the
        identity-level recovery of faces whose payload was read (`recover`, `video.recover_video`).
        A face the detector sees in profile (`align.seen_in_profile`) is left as it is: it was
        filtered, not faked (the turned-face fallback), and a frontal render would not fit it."""
        kept = [i for i, d in enumerate(detections) if not seen_in_profile(d)]
        detections = [detections[i] for i in kept]
        identities = [identities[i] for i in kept]
        if not detections:
            return image.copy()
        aligned = [align_face(image, d, self.model.image_size) for d in detections]
        crops = crops_to_tensor([a.crop for a in aligned], device=self.device)
        embeddings = torch.from_numpy(np.stack([np.asarray(e, np.float32) for e in identities]))
        with torch.inference_mode():
            images, masks = self.model.render_identities(
                crops, embeddings, refine, [crop_source_width(d, self.model.image_size) for d in detections]
            )
        outputs = tensor_to_crops(images)
        if masks is None:
            masks = [face_mask(self.model.image_size)] * len(detections)
        restored, _ = blend_faces(image, list(outputs), aligned, list(masks))
        return restored

    def _recover_in_crops(self, image, secret, detections):
        verified: list[bool] = []
        errors: list[PayloadError | None] = []

        def transform(batch: Tensor) -> Tensor:
            out = self.model.recover(batch, secret)
            verified.extend(out.verified)
            errors.extend(out.errors)
            return out.images

        result = self._faces(transform).process(image, detections)
        # Paste only faces that carried a payload: the others keep their original pixels exactly.
        kept = [r for r, e in zip(result.faces, errors, strict=True) if e is None]
        restored, _ = blend_faces(
            image, [r.output_crop for r in kept], [r.aligned for r in kept], [r.mask for r in kept]
        )
        faces = tuple(
            RecoveredFace(r.detection, v, e, "identity" if v and e is None else None)
            for r, v, e in zip(result.faces, verified, errors, strict=True)
        )
        return restored, faces


def _full_mask(footprint: Footprint | None, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    if footprint is not None and footprint.mask.size:
        x0, y0, x1, y1 = footprint.box
        mask[y0:y1, x0:x1] = footprint.mask
    return mask


# ------------------------------------------------------------------------------------ many files


@dataclass(frozen=True)
class FileResult:
    input: Path
    output: Path | None  # None when nothing was written
    faces: int
    verified: bool | None = None  # recovery only
    paths: tuple[str | None, ...] = ()  # recovery only: per face, "exact", "identity" or None
    details: dict | None = None  # what the JSON report says about this input


def anonymize_files(
    pipeline: G2FacePipeline,
    inputs: ExpandedInputs,
    output: Path,
    secret: Secret,
    *,
    seed: int | None = None,
    suffix: str | None = ".png",
    force: bool = False,
    selector: FaceSelector | None = None,
    min_face: float = 0,
    small_faces: str = "blur",
    review: Path | None = None,
    on_outcome: Callable[[FileOutcome[FileResult]], None] | None = None,
) -> BatchReport[FileResult]:
    """Anonymize every input into `output` (a file for one input, else a mirrored folder).
    PNG by default: lossless, so the in-pixel payload arrives intact. A photo without a face is
    passed through unchanged (and reported with 0 faces). `selector`, `min_face`, `small_faces`:
    see `G2FacePipeline.anonymize`; `review`: a folder that gets a contact sheet per input
    (`<name>.review.png`: the output with numbered boxes coloured by action)."""
    check_output_target(output, inputs, suffix)

    def prepare(item: InputFile):
        loaded = read_image(item.path)
        return loaded, pipeline.detector.detect(loaded.rgb)

    def handle(item: InputFile, prepared) -> FileResult:
        target = free_output_target(output, item, inputs, suffix, force=force)
        sheet_path = None
        if review is not None:
            sheet_path = item.output_path(review, REVIEW_SUFFIX)
            check_output_free(sheet_path, protected=inputs.paths, force=force)
        loaded, detections = prepared
        result = pipeline.anonymize(
            loaded.rgb,
            secret,
            seed=seed,
            detections=detections,
            selector=selector,
            min_face=min_face,
            small_faces=small_faces,
        )
        written = write_image(
            target,
            result.image,
            alpha=loaded.alpha,
            protected=inputs.paths,
            force=force,
            block=result.container,
        )
        details = {"faces": [decision_json(d, result.container is not None) for d in result.decisions]}
        if sheet_path is not None:
            sheet = review_sheet(result.image, result.decisions)
            details["review"] = str(write_image(sheet_path, sheet, protected=inputs.paths, force=force))
        return FileResult(item.path, written, len(result.faces), details=details)

    # The next file is decoded and its faces detected on a second thread while this one is
    # anonymized: both cores stay busy, and at most two photos are held.
    return process_each(inputs, handle, on_outcome, prepare=prepare)


def decision_json(decision: FaceDecision, container: bool) -> dict:
    """One face of the JSON report: detection, action, method, match score, seed, carriers."""
    face = decision.face
    entry = {
        **decision.detection.to_dict(),
        "action": decision.action,
        "method": decision.method,
    }
    if decision.match is not None:
        entry["match_score"] = round(decision.match.score, 4)
        entry["match_ambiguous"] = decision.match.ambiguous
    if face is not None:
        entry |= {
            "dummy_seed": face.dummy_seed,
            "identity_similarity": None if face.similarity is None else round(face.similarity, 4),
            "carriers": (["pixel"] if face.pixel_payload else []) + (["container"] if container else []),
        }
        if face.whole_region:
            entry["whole_region"] = True
        if face.fallback_reason is not None:
            entry["fallback_reason"] = face.fallback_reason
        if face.attributes is not None:
            entry["apparent_attributes"] = face.attributes
        if face.shortfalls:  # a face for a person to look at before publishing
            entry["review"] = list(face.shortfalls)
    return entry


def recover_files(
    pipeline: G2FacePipeline,
    inputs: ExpandedInputs,
    output: Path,
    secret: Secret,
    *,
    allow_unverified: bool = False,
    suffix: str | None = ".png",
    force: bool = False,
    refine: int = 0,
    on_outcome: Callable[[FileOutcome[FileResult]], None] | None = None,
) -> BatchReport[FileResult]:
    """Recover every input. An image whose faces do not verify (wrong secret, damaged payload) is a
    failure and nothing is written for it, unless `allow_unverified`."""
    check_output_target(output, inputs, suffix)

    def handle(item: InputFile) -> FileResult:
        target = free_output_target(output, item, inputs, suffix, force=force)
        loaded = read_image(item.path)
        result = pipeline.recover(loaded.rgb, secret, container=loaded.block, refine=refine)
        if isinstance(result.container_error, WrongSecretError):
            raise UnverifiedRecoveryError(f"{item.path}: {result.container_error}; nothing written")
        if not result.faces:
            raise NoFaceError(f"{item.path}: no face found; nothing written")
        if all(f.error is not None for f in result.faces):
            note = f" (container: {result.container_error})" if result.container_error else ""
            raise InputError(f"{item.path}: {result.faces[0].error}{note}; nothing written")
        if not result.verified and not allow_unverified:
            raise UnverifiedRecoveryError(
                f"{item.path}: recovery not verified (wrong password or key, or a damaged image); "
                "nothing written (--allow-unverified writes it anyway)"
            )
        written = write_image(target, result.image, alpha=loaded.alpha, protected=inputs.paths, force=force)
        details = {
            "container": "used"
            if any(f.path == "exact" for f in result.faces)
            else (str(result.container_error) if result.container_error else "absent"),
            "faces": [
                {
                    **({} if f.detection is None else f.detection.to_dict()),
                    "verified": f.verified,
                    "path": f.path,
                    "error": None if f.error is None else str(f.error),
                }
                for f in result.faces
            ],
        }
        return FileResult(
            item.path,
            written,
            len(result.faces),
            result.verified,
            tuple(f.path for f in result.faces),
            details,
        )

    return process_each(inputs, handle, on_outcome)
