"""One evaluation run: every method through the same detect → align → anonymize → paste-back path
on full photos, every protocol, one run folder.

Features are computed once per (method, variant, image) and cached in the run folder
(`cache/<method>/<variant>/`), so a rerun resumes and a new method costs only its own features.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from g2face.align import paste_faces
from g2face.detection.base import FaceDetector, iou
from g2face.evaluation import carriers, report
from g2face.evaluation import metrics as mx
from g2face.evaluation.cache import FeatureCache, Record
from g2face.evaluation.faces import (
    DISTORTIONS,
    FaceFinder,
    Photo,
    compose_affine,
    pick_face,
    transform_box,
)
from g2face.evaluation.methods import (
    Anonymizer,
    Recovered,
    ReversibleAnonymizer,
    is_reversible,
    recovers_from_images,
)
from g2face.evaluation.protocols import (
    GallerySplit,
    LfwPairs,
    Metric,
    identification,
    read_celeba_split,
    read_lfw_pairs,
    verification,
)
from g2face.io import read_image
from g2face.nn.crops import crops_to_tensor, tensor_to_crops
from g2face.payload import Secret
from g2face.priors.base import GeometryEncoder, IdentityEncoder, PerceptualDistance
from g2face.types import AlignedFace, FaceDetection

PROTOCOLS = ("lfw", "celeba", "utility", "diversity", "recovery", "speed")
DETECTED_IOU = 0.5
"""A detector "finds" an anonymized face when one of its boxes overlaps the original face this much."""


@dataclass(frozen=True)
class EvalConfig:
    data: Path
    out: Path
    protocols: tuple[str, ...] = PROTOCOLS
    limit: int | None = None
    """LFW pairs (spread over folds) and CelebA probes; None: the full protocols."""
    utility_limit: int = 500
    diversity_limit: int = 200
    recovery_limit: int = 300
    carrier_widths: tuple[int, ...] = (48, 64, 96, 128, 256)
    """Face widths (px) of the in-pixel payload's size table (image-level recovery)."""
    carrier_width_limit: int = 50
    """Photos rescaled per face width for that table."""
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    grid_faces: int = 8
    batch_size: int = 16
    white_box: tuple[str, ...] = ("sface",)
    """Recognizers the evaluated models trained against: their anonymity numbers are flagged."""
    realism_recognizer: str = "facenet-casia"
    """Feature space of the KID realism score."""
    seed: int = 0
    device: str = "cpu"


@dataclass
class Toolkit:
    """The networks an evaluation measures with (all behind the prior/detector interfaces)."""

    finder: FaceFinder
    recognizers: Sequence[IdentityEncoder]
    geometry: GeometryEncoder | None = None
    detectors: Sequence[FaceDetector] = ()
    perceptual: PerceptualDistance | None = None


@dataclass
class Results:
    metrics: list[Metric] = field(default_factory=list)
    rocs: dict[str, dict[str, mx.Roc]] = field(default_factory=lambda: defaultdict(dict))
    """recognizer -> curve label -> ROC (LFW re-identification and recovery)."""
    grid: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """column label -> one RGB crop per sample face."""


def wrong_password(method: ReversibleAnonymizer) -> str:
    return method.password + " but wrong"


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Evaluation:
    def __init__(self, config: EvalConfig, toolkit: Toolkit, methods: Sequence[Anonymizer]):
        self.config, self.tk, self.methods = config, toolkit, list(methods)
        self.device = torch.device(config.device)
        self._caches: dict[tuple[str, str], FeatureCache] = {}
        self.stage_seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.stage_faces: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.megapixels: dict[str, float] = defaultdict(float)

    # --- plumbing ----------------------------------------------------------------------------------

    def cache(self, method: str, variant: str) -> FeatureCache:
        if (method, variant) not in self._caches:
            self._caches[method, variant] = FeatureCache(self.config.out / "cache" / method / variant)
        return self._caches[method, variant]

    @contextmanager
    def _timed(self, method: str, stage: str, faces: int):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stage_seconds[method][stage] += time.perf_counter() - start
        self.stage_faces[method][stage] += faces

    def seed_of(self, key: str) -> int:
        return zlib.crc32(key.encode()) ^ self.config.seed

    def _fill(
        self,
        cache: FeatureCache,
        keys: Sequence[str],
        compute: Callable[[list[Photo]], list[Record]],
        desc: str,
    ) -> None:
        """Compute the records `cache` lacks, in batches; faces whose original is not found get
        `{"found": 0}` (their features read back as NaN)."""
        todo = cache.missing(list(keys))
        if not todo:
            return
        with tqdm(total=len(todo), desc=desc, unit="face", dynamic_ncols=True) as bar:
            for batch in _chunks(todo, self.config.batch_size):
                photos = [self.photo(k) for k in batch]
                done = iter(compute([p for p in photos if p is not None]))
                for key, photo in zip(batch, photos, strict=True):
                    cache.put(key, next(done) if photo is not None else {"found": np.array(0)})
                bar.update(len(batch))
        cache.flush()

    def photo(self, key: str) -> Photo | None:
        """The image and its aligned main face (detections cached under `cache/faces`)."""
        faces = self.cache("faces", "main")
        image = read_image(self.config.data / key).rgb
        if key not in faces:
            with self._timed("faces", "detect", 1):
                det = pick_face(self.tk.finder.detector.detect(image), image.shape)
            record = {"found": np.array(int(det is not None))}
            if det is not None:
                record |= {"box": np.array(det.box), "landmarks": det.points, "score": np.array(det.score)}
            faces.put(key, record)
        record = faces[key]
        if not int(record["found"]):
            return None
        det = FaceDetection(
            tuple(record["box"].tolist()),
            tuple(map(tuple, record["landmarks"].tolist())),
            float(record["score"]),
        )
        with self._timed("faces", "align", 1):
            face = self.tk.finder.align(image, det)
        return Photo(key, image, face)

    @torch.no_grad()
    def embed(self, crops: Tensor) -> Record:
        crops = crops.to(self.device)
        return {f"emb.{r.name}": r(crops).float().cpu().numpy() for r in self.tk.recognizers}

    @staticmethod
    def _rows(batch_record: Record, n: int) -> list[Record]:
        return [{name: value[i] for name, value in batch_record.items()} for i in range(n)]

    # --- what a method does to photos --------------------------------------------------------------

    @torch.no_grad()
    def anonymize(self, method: Anonymizer, photos: list[Photo], seed_offset: int = 0) -> list[np.ndarray]:
        """Full anonymized photos (the method's crops pasted back through the face mask)."""
        crops = crops_to_tensor([p.face.crop for p in photos]).to(self.device)
        seeds = [self.seed_of(p.key) + seed_offset for p in photos]
        with self._timed(method.name, "model", len(photos)):
            result = method.anonymize(crops, seeds)
        masks = [None] * len(photos)
        if isinstance(result, tuple):  # a method that says where its crops replace the original
            result, masks = result
        out = tensor_to_crops(result)
        with self._timed(method.name, "paste", len(photos)):
            images = [self.tk.finder.paste(p, c, m) for p, c, m in zip(photos, out, masks, strict=True)]
        self.megapixels[method.name] += sum(p.image.shape[0] * p.image.shape[1] for p in photos) / 1e6
        return images

    def recrop(self, photos: list[Photo], images: list[np.ndarray]) -> Tensor:
        return crops_to_tensor(
            [self.tk.finder.crop(img, p.face.matrix) for p, img in zip(photos, images, strict=True)]
        )

    def original_features(self, photos: list[Photo]) -> list[Record]:
        return self._rows(self.embed(crops_to_tensor([p.face.crop for p in photos])), len(photos))

    def anonymized_features(
        self, method: Anonymizer, photos: list[Photo], seed_offset: int = 0
    ) -> list[Record]:
        images = self.anonymize(method, photos, seed_offset)
        return self._rows(self.embed(self.recrop(photos, images)), len(photos))

    @torch.no_grad()
    def utility_features(self, photos: list[Photo], images: list[np.ndarray]) -> list[Record]:
        crops = self.recrop(photos, images)
        out: Record = {}
        if self.tk.geometry is not None:
            g = self.tk.geometry(crops.to(self.device))
            out |= {"landmarks": g.landmarks, "pose": g.pose, "expression": g.expression}
            out = {k: v.float().cpu().numpy() for k, v in out.items()}
        for detector in self.tk.detectors:
            out[f"det.{detector.name}"] = np.array(
                [
                    any(iou(d.box, p.face.detection.box) >= DETECTED_IOU for d in detector.detect(img))
                    for p, img in zip(photos, images, strict=True)
                ]
            )
        return self._rows(out, len(photos))

    @torch.no_grad()
    def recover_views(
        self,
        method: ReversibleAnonymizer,
        published: list[np.ndarray],
        faces: list[AlignedFace],
        password: str,
    ) -> tuple[Tensor, Recovered]:
        """Recover the faces found in published photos, paste them back, and crop the result as the
        face was found: what a user sees after recovery (outside the mask the photo is unchanged)."""
        crops = crops_to_tensor([f.crop for f in faces]).to(self.device)
        with self._timed(method.name, "recover", len(faces)):
            rec = method.recover(crops, password)
        views = [
            self.tk.finder.crop(paste_faces(image, [crop], [face]), face.matrix)
            for image, crop, face in zip(published, tensor_to_crops(rec.crops), faces, strict=True)
        ]
        return crops_to_tensor(views), rec

    @torch.no_grad()
    def recovery_features(
        self, method: ReversibleAnonymizer, photos: list[Photo], distortion: str, password: str
    ) -> list[Record]:
        """Anonymize, publish (distort the whole photo), find the face again, recover it, and compare
        with the original photo cropped exactly as the recovered face was."""
        records: list[Record] = [{"found": np.array(0)} for _ in photos]
        found, published, faces, references = [], [], [], []
        for i, (photo, image) in enumerate(zip(photos, self.anonymize(method, photos), strict=True)):
            distorted, to_distorted = DISTORTIONS[distortion](image)
            face = self.tk.finder.find(distorted, near=transform_box(photo.face.detection.box, to_distorted))
            if face is not None:
                found.append(i), published.append(distorted), faces.append(face)
                references.append(self.tk.finder.crop(photo.image, compose_affine(face.matrix, to_distorted)))
        if not found:
            return records
        views, rec = self.recover_views(method, published, faces, password)
        reference = crops_to_tensor(references)
        batch: Record = {
            "found": np.ones(len(found)),
            "verified": rec.verified.cpu().numpy(),
            "psnr": mx.psnr(views, reference),
            "ssim": mx.ssim(views, reference),
            "mae": mx.mae(views, reference),
        } | self.embed(views)
        if rec.bit_errors is not None:
            batch["bit_errors"] = rec.bit_errors.float().cpu().numpy()
        if self.tk.perceptual is not None:
            distance = self.tk.perceptual(views.to(self.device), reference.to(self.device))
            batch[f"perceptual.{self.tk.perceptual.name}"] = distance.float().cpu().numpy()
        for i, row in zip(found, self._rows(batch, len(found)), strict=True):
            records[i] = row
        return records

    # --- protocols ---------------------------------------------------------------------------------

    def run(self) -> Results:
        cfg, results = self.config, Results()
        wanted = set(cfg.protocols)
        pairs = read_lfw_pairs(cfg.data, cfg.limit)
        firsts = list(dict.fromkeys(pairs.first))
        split = read_celeba_split(cfg.data, cfg.limit) if "celeba" in wanted else None
        originals = list(pairs.first + pairs.second) + ([*split.gallery] if split else [])
        self._fill(self.cache("original", "embed"), originals, self.original_features, "original faces")
        for method in self.methods:
            name = method.name
            self._fill(
                self.cache(name, "anonymized"),
                firsts,
                lambda ps, m=method: self.anonymized_features(m, ps),
                name,
            )
            if split is not None:
                self._fill(
                    self.cache(name, "anonymized"),
                    list(split.probes),
                    lambda ps, m=method: self.anonymized_features(m, ps),
                    f"{name} (CelebA)",
                )
        if "lfw" in wanted:
            self._lfw(pairs, results)
        if split is not None:
            self._celeba(split, results)
        if "utility" in wanted:
            self._utility(pairs, firsts[: cfg.utility_limit], results)
        if "diversity" in wanted:
            self._diversity(firsts[: cfg.diversity_limit], results)
        if "recovery" in wanted:
            self._recovery(pairs, results)
        if "speed" in wanted:
            self._speed(results)
        self._grid(firsts[: cfg.grid_faces], results)
        return results

    def _emb(self, method: str, variant: str, keys: Sequence[str], recognizer: str) -> np.ndarray:
        return self.cache(method, variant).stack(list(keys), f"emb.{recognizer}")

    def _lfw(self, pairs: LfwPairs, results: Results) -> None:
        for rec in self.tk.recognizers:
            white = rec.name in self.config.white_box
            ref_first = self._emb("original", "embed", pairs.first, rec.name)
            second = self._emb("original", "embed", pairs.second, rec.name)
            rows = [("original", ref_first)] + [
                (m.name, self._emb(m.name, "anonymized", pairs.first, rec.name)) for m in self.methods
            ]
            for label, first in rows:
                v = verification(
                    pairs,
                    ref_first,
                    first,
                    second,
                    protocol="lfw_reid",
                    method=label,
                    recognizer=rec.name,
                    white_box=white,
                )
                results.metrics += v.metrics
                results.rocs[rec.name][label] = v.roc
                to_source = mx.cosine_scores(first, ref_first)
                ok = np.isfinite(to_source)
                results.metrics.append(
                    Metric(
                        "lfw_reid",
                        label,
                        "cos_to_source",
                        float(to_source[ok].mean()),
                        int(ok.sum()),
                        rec.name,
                        white,
                    )
                )

    def _celeba(self, split: GallerySplit, results: Results) -> None:
        for rec in self.tk.recognizers:
            gallery = self._emb("original", "embed", split.gallery, rec.name)
            for m in self.methods:
                probes = self._emb(m.name, "anonymized", split.probes, rec.name)
                results.metrics += identification(
                    split,
                    gallery,
                    probes,
                    method=m.name,
                    recognizer=rec.name,
                    white_box=rec.name in self.config.white_box,
                )

    def _utility(self, pairs: LfwPairs, keys: list[str], results: Results) -> None:
        if self.tk.geometry is None and not self.tk.detectors:
            return
        reference = self.cache("original", "utility")
        self._fill(
            reference, keys, lambda ps: self.utility_features(ps, [p.image for p in ps]), "utility (original)"
        )
        for m in self.methods:
            cache = self.cache(m.name, "utility")
            self._fill(
                cache,
                keys,
                lambda ps, m=m: self.utility_features(ps, self.anonymize(m, ps)),
                f"utility {m.name}",
            )
            results.metrics += self._utility_metrics(m.name, cache, reference, keys)
        rec = next((r for r in self.tk.recognizers if r.name == self.config.realism_recognizer), None)
        if rec is not None:
            real = self._emb("original", "embed", list(dict.fromkeys(pairs.second)), rec.name)
            real = real[np.isfinite(real).all(1)]
            for m in self.methods:
                fake = self._emb(m.name, "anonymized", list(dict.fromkeys(pairs.first)), rec.name)
                fake = fake[np.isfinite(fake).all(1)]
                kid = mx.kid(
                    fake, real, self.config.kid_subsets, self.config.kid_subset_size, self.config.seed
                )
                results.metrics.append(
                    Metric(
                        "utility",
                        m.name,
                        "kid",
                        kid.mean,
                        min(len(fake), len(real)),
                        rec.name,
                        std=kid.std,
                        note=f"{kid.n_subsets} subsets of {kid.subset_size}; anonymized vs real LFW faces",
                    )
                )

    @staticmethod
    def _utility_metrics(
        method: str, cache: FeatureCache, reference: FeatureCache, keys: list[str]
    ) -> list[Metric]:
        out = []
        fields = set().union(*(cache[k].keys() for k in keys if k in cache))
        for det in sorted(f for f in fields if f.startswith("det.")):
            found = cache.stack(keys, det)
            ok = np.isfinite(found)
            out.append(
                Metric("utility", method, f"detected.{det[4:]}", float(found[ok].mean()), int(ok.sum()))
            )
        if "landmarks" in fields:
            ok = np.isfinite(cache.stack(keys, "pose")).all(1) & np.isfinite(
                reference.stack(keys, "pose")
            ).all(1)
            ks = [k for k, good in zip(keys, ok, strict=True) if good]
            nme = mx.landmark_nme(cache.stack(ks, "landmarks"), reference.stack(ks, "landmarks"))
            pose = mx.pose_error(cache.stack(ks, "pose"), reference.stack(ks, "pose"))
            expr = mx.blendshape_l1(cache.stack(ks, "expression"), reference.stack(ks, "expression"))
            out.append(Metric("utility", method, "landmark_nme", float(nme.mean()), len(ks)))
            for axis, err in zip(("yaw", "pitch", "roll"), pose.T, strict=True):
                out.append(Metric("utility", method, f"{axis}_error_deg", float(err.mean()), len(ks)))
            out.append(Metric("utility", method, "expression_l1", float(expr.mean()), len(ks)))
        return out

    def _diversity(self, keys: list[str], results: Results) -> None:
        for m in self.methods:
            cache = self.cache(m.name, "anonymized_seed2")
            self._fill(
                cache,
                keys,
                lambda ps, m=m: self.anonymized_features(m, ps, seed_offset=1),
                f"diversity {m.name}",
            )
            for rec in self.tk.recognizers:
                cos = mx.cosine_scores(
                    self._emb(m.name, "anonymized", keys, rec.name), cache.stack(keys, f"emb.{rec.name}")
                )
                ok = np.isfinite(cos)
                results.metrics.append(
                    Metric(
                        "diversity",
                        m.name,
                        "cos_two_seeds",
                        float(cos[ok].mean()),
                        int(ok.sum()),
                        rec.name,
                        rec.name in self.config.white_box,
                    )
                )

    def _recovery(self, pairs: LfwPairs, results: Results) -> None:
        keep = np.zeros(len(pairs), bool)
        keep[
            np.argsort(np.arange(len(pairs)) % max(1, math.ceil(len(pairs) / self.config.recovery_limit)))[
                : self.config.recovery_limit
            ]
        ] = True
        sub = LfwPairs(
            tuple(np.array(pairs.first)[keep]),
            tuple(np.array(pairs.second)[keep]),
            pairs.same[keep],
            pairs.fold[keep],
        )
        firsts = list(dict.fromkeys(sub.first))
        for m in (m for m in self.methods if is_reversible(m)):
            conditions = [(d, m.password) for d in DISTORTIONS] + [("wrong_password", wrong_password(m))]
            for condition, password in conditions:
                variant = "recovered/" + condition if condition != "wrong_password" else condition
                distortion = "png" if condition == "wrong_password" else condition
                cache = self.cache(m.name, variant)
                self._fill(
                    cache,
                    firsts,
                    lambda ps, m=m, d=distortion, pw=password: self.recovery_features(m, ps, d, pw),
                    f"{m.name} {variant}",
                )
                results.metrics += self._recovery_metrics(m.name, variant, cache, sub, results)
        for m in (m for m in self.methods if recovers_from_images(m)):
            self._image_recovery(m, sub, results)

    def _recovery_metrics(
        self, method: str, variant: str, cache: FeatureCache, pairs: LfwPairs, results: Results
    ):
        keys = list(dict.fromkeys(pairs.first))
        found = cache.stack(keys, "found") == 1
        out = [Metric(variant, method, "found_rate", float(found.mean()), len(keys))]
        verified = cache.stack(keys, "verified")
        name = "false_verify_rate" if variant == "wrong_password" else "verified_rate"
        out.append(
            Metric(
                variant,
                method,
                name,
                float(np.nan_to_num(verified).mean()),
                len(keys),
                note="faces not found again count as not verified",
            )
        )
        fields = set().union(*(cache[k].keys() for k in keys))
        for f in sorted(
            fields & {"psnr", "ssim", "mae", "bit_errors"}
            | {f for f in fields if f.startswith("perceptual.")}
        ):
            v = cache.stack(keys, f)[found]
            label = f.removeprefix("perceptual.")
            if f == "bit_errors":  # known only where the code could correct them (NaN elsewhere)
                v = v[np.isfinite(v)]
            out.append(Metric(variant, method, label, float(v.mean()) if len(v) else float("nan"), len(v)))
        for rec in self.tk.recognizers:
            white = rec.name in self.config.white_box
            ref_first = self._emb("original", "embed", pairs.first, rec.name)
            v = verification(
                pairs,
                ref_first,
                cache.stack(list(pairs.first), f"emb.{rec.name}"),
                self._emb("original", "embed", pairs.second, rec.name),
                protocol=variant,
                method=method,
                recognizer=rec.name,
                white_box=white,
            )
            out += [x for x in v.metrics if x.name != "found_rate"]
            results.rocs[rec.name][f"{method} {variant}"] = v.roc
        return out

    def _image_recovery(self, method: ReversibleAnonymizer, pairs: LfwPairs, results: Results) -> None:
        """Both image-level paths of a pipeline-recovered method (g2face.evaluation.carriers):
        the exact container per output format, the in-pixel payload per attack and by face width,
        wrong passwords, and the identity of the faces recovered after strip + JPEG q90 against the
        person, beside the same from the PNG (the payload read without channel errors)."""
        pipe = method.pipeline(self.tk.finder.detector)
        secret = Secret.from_password(method.password)
        wrong = Secret.from_password(wrong_password(method))
        firsts = list(dict.fromkeys(pairs.first))
        cache = self.cache(method.name, "carriers")

        def compute(photos: list[Photo]) -> list[Record]:
            out = []
            for p in photos:
                crop = lambda image, p=p: self.tk.finder.crop(image, p.face.matrix)  # noqa: E731
                with self._timed(method.name, "carriers", 1):
                    record = carriers.carrier_record(pipe, p.image, p.face.detection, secret, wrong, crop)
                views = [record.pop(f"view.{a}") for a in ("png", "strip_jpeg90")]
                embedded = self.embed(crops_to_tensor(views))
                for i, attack in enumerate(("png", "strip_jpeg90")):
                    record |= {f"{k}.{attack}": v[i] for k, v in embedded.items()}
                out.append({"found": np.array(1)} | record)
            return out

        self._fill(cache, firsts, compute, f"{method.name} carriers")
        found = cache.stack(firsts, "found") == 1
        note = "faces not found count as failures"
        fields = set().union(*(cache[k].keys() for k in firsts if k in cache))
        names = {
            "container": ("recovery_container", "exact_rate"),
            "pixel": ("recovery_pixel", "verified_rate"),
            "wrong": ("wrong_password", "false_verify_rate"),
        }
        for column in sorted(c for c in fields if c.split(".")[0] in names):
            kind, condition = column.split(".", 1)
            protocol, name = names[kind][0], f"{names[kind][1]}.{condition}"
            value = float(np.nan_to_num(cache.stack(firsts, column)).mean())
            results.metrics.append(Metric(protocol, method.name, name, value, len(firsts), note=note))
        results.metrics.append(
            Metric("recovery_pixel", method.name, "found_rate", float(found.mean()), len(firsts))
        )
        for rec in self.tk.recognizers:
            for attack in ("png", "strip_jpeg90"):
                v = verification(
                    pairs,
                    self._emb("original", "embed", pairs.first, rec.name),
                    cache.stack(list(pairs.first), f"emb.{rec.name}.{attack}"),
                    self._emb("original", "embed", pairs.second, rec.name),
                    protocol=f"recovery_pixel/{attack}",
                    method=method.name,
                    recognizer=rec.name,
                    white_box=rec.name in self.config.white_box,
                )
                results.metrics += [x for x in v.metrics if x.name != "found_rate"]
                results.rocs[rec.name][f"{method.name} recovered ({attack})"] = v.roc
        keys = firsts[: self.config.carrier_width_limit]
        for width in self.config.carrier_widths:
            cache = self.cache(method.name, f"carriers_width{width}")
            self._fill(
                cache,
                keys,
                lambda ps, w=width: [
                    carriers.width_record(pipe, p.image, p.face.detection, secret, w) for p in ps
                ],
                f"{method.name} face width {width}",
            )
            detected = cache.stack(keys, "detected") == 1
            verified = np.nan_to_num(cache.stack(keys, "verified"))[detected]
            results.metrics.append(
                Metric(
                    "recovery_pixel/strip_jpeg90",
                    method.name,
                    f"verified_rate.width{width}",
                    float(verified.mean()) if len(verified) else float("nan"),
                    int(detected.sum()),
                    note="photo rescaled to this face width; a face too small to carry the payload fails",
                )
            )

    def _speed(self, results: Results) -> None:
        threads = torch.get_num_threads()
        note = f"device {self.device}, {threads} CPU threads"
        detect_align = {
            s: self.stage_seconds["faces"][s] / max(1, self.stage_faces["faces"][s])
            for s in ("detect", "align")
        }
        for stage, seconds in detect_align.items():
            if self.stage_faces["faces"][stage]:
                results.metrics.append(
                    Metric(
                        "speed",
                        "pipeline",
                        f"{stage}_ms_per_face",
                        1e3 * seconds,
                        self.stage_faces["faces"][stage],
                        note=note,
                    )
                )
        for m in self.methods:
            for stage, seconds in self.stage_seconds[m.name].items():
                n = self.stage_faces[m.name][stage]
                results.metrics.append(
                    Metric("speed", m.name, f"{stage}_ms_per_face", 1e3 * seconds / n, n, note=note)
                )
            mp = self.megapixels[m.name]
            total = self.stage_seconds[m.name]["model"] + self.stage_seconds[m.name]["paste"]
            if mp:
                results.metrics.append(
                    Metric(
                        "speed",
                        m.name,
                        "model+paste_ms_per_megapixel",
                        1e3 * total / mp,
                        self.stage_faces[m.name]["model"],
                        note=note,
                    )
                )

    def _grid(self, keys: list[str], results: Results) -> None:
        photos = [p for p in (self.photo(k) for k in keys) if p is not None]
        if not photos:
            return
        results.grid["original"] = [p.face.crop for p in photos]
        for m in self.methods:
            images = self.anonymize(m, photos)
            results.grid[m.name] = tensor_to_crops(self.recrop(photos, images))
            if is_reversible(m):
                faces = [p.face for p in photos]
                for label, password in (("recovered", m.password), ("wrong password", wrong_password(m))):
                    results.grid[f"{m.name} {label}"] = tensor_to_crops(
                        self.recover_views(m, images, faces, password)[0]
                    )


def run_evaluation(config: EvalConfig, toolkit: Toolkit, methods: Sequence[Anonymizer]) -> Results:
    """Run every protocol and write the run folder; returns the results it wrote."""
    config.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = Evaluation(config, toolkit, methods).run()
    meta = {
        "methods": ", ".join(m.name for m in methods),
        "recognizers": ", ".join(
            r.name + (" (white-box)" if r.name in config.white_box else "") for r in toolkit.recognizers
        ),
        "detectors for utility": ", ".join(d.name for d in toolkit.detectors) or "none",
        "geometry": toolkit.geometry.name if toolkit.geometry is not None else "none",
        "data": str(config.data),
        "limit": config.limit if config.limit is not None else "full protocols",
        "device": f"{config.device}, {torch.get_num_threads()} CPU threads",
        "wall time (s)": round(time.perf_counter() - started, 1),
    }
    figures = report.plot_rocs(config.out, results.rocs)
    if results.grid:
        report.save_grid(config.out / "grid.png", results.grid)
        figures.append("grid.png")
    report.write_metrics_json(config.out / "metrics.json", results.metrics, meta)
    report.write_report_md(config.out / "report.md", results.metrics, meta, figures)
    return results
