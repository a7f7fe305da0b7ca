"""Evaluation protocols: the data they read and the numbers they compute from face features.

* LFW re-identification (anonymity): the standard 6000 pairs in 10 folds of 300 same + 300
  different. The first image of every pair is anonymized and compared with the *original* second
  image; per fold, thresholds at FAR 1e-3 / 1e-2 are set on the original pairs of the other nine
  folds. Reported per recognizer: TAR@FAR (mean ± std over folds), ROC AUC and mean cosine of
  same-person pairs. The same computation scores recovered and wrong-password faces.
* CelebA identification: per identity the first image (by file name) is the original gallery, the
  others are probes; rank-1 accuracy of anonymized probes.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from g2face.evaluation import metrics as mx

LFW_FARS = (1e-3, 1e-2)


@dataclass(frozen=True)
class Metric:
    """One reported number, with where it came from."""

    protocol: str
    method: str
    name: str
    value: float
    n: int
    """Sample size: pairs, faces or probes the value is computed over."""
    recognizer: str | None = None
    white_box: bool = False
    """The method was trained against this recognizer, so its anonymity numbers are optimistic."""
    std: float | None = None
    note: str = ""


# --- LFW -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LfwPairs:
    first: tuple[str, ...]
    second: tuple[str, ...]
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.same)

    def genuine(self, count: int | None = None) -> list[tuple[str, str]]:
        """(first, second) of the same-person pairs, in file order; `count` keeps about that many,
        taken evenly over the list (so every fold is represented)."""
        pairs = [(a, b) for a, b, same in zip(self.first, self.second, self.same, strict=True) if same]
        if count is None:
            return pairs
        return pairs[:: max(1, len(pairs) // count)][:count]


def name_seed(name: str) -> int:
    """A reproducible 63-bit seed for a photo (its file name, plus a label such as a key's): runs
    of different settings draw the same dummies for the same photo, so they compare paired."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1


def lfw_key(name: str, number: str | int) -> str:
    return f"lfw/lfw-deepfunneled/{name}/{name}_{int(number):04d}.jpg"


def read_lfw_pairs(data_root: Path, limit: int | None = None) -> LfwPairs:
    """Read `lfw/pairs.txt`; `limit` keeps about that many pairs, taken evenly from every fold and
    from both same and different pairs, so the 10-fold protocol keeps its shape."""
    lines = (Path(data_root) / "lfw" / "pairs.txt").read_text().split("\n")
    n_folds, per_class = (int(v) for v in lines[0].split())
    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != 2 * n_folds * per_class:
        raise ValueError(f"pairs.txt: expected {2 * n_folds * per_class} pairs, found {len(rows)}")
    keep = per_class if limit is None else max(1, min(per_class, -(-limit // (2 * n_folds))))
    first, second, same, fold = [], [], [], []
    for i, row in enumerate(rows):
        k, within = divmod(i, 2 * per_class)
        if within % per_class >= keep:
            continue
        if len(row) == 3:
            a, b = lfw_key(row[0], row[1]), lfw_key(row[0], row[2])
        else:
            a, b = lfw_key(row[0], row[1]), lfw_key(row[2], row[3])
        is_same = within < per_class
        if is_same != (len(row) == 3):
            raise ValueError(f"pairs.txt line {i + 2}: a {'same' if is_same else 'different'} pair expected")
        first.append(a), second.append(b), same.append(is_same), fold.append(k)
    return LfwPairs(tuple(first), tuple(second), np.array(same), np.array(fold))


@dataclass(frozen=True)
class VerificationResult:
    metrics: list[Metric]
    roc: mx.Roc


def verification(
    pairs: LfwPairs,
    reference_first: np.ndarray,
    test_first: np.ndarray,
    second: np.ndarray,
    *,
    protocol: str,
    method: str,
    recognizer: str,
    white_box: bool,
) -> VerificationResult:
    """Score pairs (test first image vs original second image) against thresholds set on original
    pairs. Rows of NaN mark faces not found: such pairs are dropped when the *original* face was not
    found, and count as rejected (score -inf) when the test face was not found (e.g. not detected
    again after JPEG), since a user could not have matched them either."""
    reference = mx.cosine_scores(reference_first, second)
    valid = np.isfinite(reference)
    found = np.isfinite(mx.cosine_scores(test_first, second)) & valid
    test = np.where(found, mx.cosine_scores(np.nan_to_num(test_first), second), -np.inf)
    same, fold = pairs.same[valid], pairs.fold[valid]
    reference, test, found = reference[valid], test[valid], found[valid]
    common = dict(protocol=protocol, method=method, recognizer=recognizer, white_box=white_box)
    out = []
    for far in LFW_FARS:
        stats = mx.kfold_tar_at_far(reference, test, same, fold, far)
        out.append(
            Metric(name=f"tar@far={far:g}", value=stats.mean, std=stats.std, n=int(same.sum()), **common)
        )
    roc = mx.roc_curve(np.where(found, test, -2.0), same)
    out.append(Metric(name="auc", value=roc.auc, n=len(same), **common))
    genuine = found & same
    out.append(
        Metric(name="cos_same_person", value=float(test[genuine].mean()), n=int(genuine.sum()), **common)
    )
    if not found.all():
        out.append(Metric(name="found_rate", value=float(found.mean()), n=len(found), **common))
    return VerificationResult(out, roc)


# --- CelebA ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GallerySplit:
    gallery: tuple[str, ...]
    gallery_ids: np.ndarray
    probes: tuple[str, ...]
    probe_ids: np.ndarray


def read_celeba_split(data_root: Path, limit: int | None = None) -> GallerySplit:
    """`celeba/identities.csv` (`file,identity`): per identity with at least two images, the first
    file is the gallery entry and the rest are probes. `limit` caps the probes, taking whole
    identities in order (so every probe's identity is in the gallery)."""
    by_identity: dict[int, list[str]] = {}
    with open(Path(data_root) / "celeba" / "identities.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_identity.setdefault(int(row["identity"]), []).append(f"celeba/{row['file']}")
    gallery, gallery_ids, probes, probe_ids = [], [], [], []
    for identity, files in sorted(by_identity.items()):
        files = sorted(files)
        if len(files) < 2:
            continue
        if limit is not None and len(probes) >= limit:
            break
        gallery.append(files[0]), gallery_ids.append(identity)
        probes += files[1:]
        probe_ids += [identity] * (len(files) - 1)
    if limit is not None:
        probes, probe_ids = probes[:limit], probe_ids[:limit]
    return GallerySplit(tuple(gallery), np.array(gallery_ids), tuple(probes), np.array(probe_ids))


def identification(
    split: GallerySplit,
    gallery: np.ndarray,
    probes: np.ndarray,
    *,
    method: str,
    recognizer: str,
    white_box: bool,
) -> list[Metric]:
    """Rank-1 of probes against the gallery; faces whose original was not found are left out."""
    g_ok, p_ok = np.isfinite(gallery).all(1), np.isfinite(probes).all(1)
    rank1 = mx.rank1_accuracy(probes[p_ok], split.probe_ids[p_ok], gallery[g_ok], split.gallery_ids[g_ok])
    note = f"gallery of {int(g_ok.sum())} identities"
    return [Metric("celeba_rank1", method, "rank1", rank1, int(p_ok.sum()), recognizer, white_box, note=note)]
