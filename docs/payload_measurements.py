"""Measure the figures quoted in docs/payload-format.md.

    python docs/payload_measurements.py [--lfw ../shared/data/lfw/lfw-deepfunneled] [--trials 100]

Real embeddings come from LFW photos through OpenCV's SFace (128-d, after YuNet alignment) when
the g2face cache holds the folded SFace model; 512-d figures use synthetic embeddings only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from g2face import hub
from g2face.payload import KDF_PARAMETER_SETS, PayloadCodec, PayloadNotFoundError, Secret, kdf
from g2face.payload.quantize import EmbeddingQuantizer


def lfw_embeddings(lfw: Path, n: int) -> dict[str, np.ndarray]:
    paths = sorted(lfw.glob("*/*.jpg"))[:: max(1, len(sorted(lfw.glob("*/*.jpg"))) // n)][:n]
    folded = hub.cache_dir() / "converted/sface/v1/sface_folded_fp32.onnx"
    if not folded.exists():
        return {}
    detector = cv2.FaceDetectorYN.create(str(hub.asset_path("yunet")), "", (250, 250), 0.6)
    sface = cv2.FaceRecognizerSF.create(str(folded), "")
    found = []
    for path in paths:
        image = cv2.imread(str(path))
        _, faces = detector.detect(image)
        if faces is not None:
            found.append(sface.feature(sface.alignCrop(image, faces[0])).reshape(-1))
    return {"SFace-128 (LFW)": np.stack(found)}


def synthetic(dim: int, n: int, heavy: bool, rng: np.random.Generator) -> np.ndarray:
    x = (
        rng.standard_t(3, (n, dim)) + 0.5 * rng.standard_normal(dim)
        if heavy
        else rng.standard_normal((n, dim))
    )
    return x


def quantisation_report(sets: dict[str, np.ndarray]) -> None:
    print("\n## cosine(original, de-quantised), 4 bits/dim")
    for name, x in sets.items():
        q = EmbeddingQuantizer(x.shape[1])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        c = np.array([q.dequantize(q.quantize(v)) @ v for v in x])
        print(f"{name:28} n={len(x):4}  mean {c.mean():.4f}  min {c.min():.4f}")


def success_rate(codec, enc, secret, received_fn, trials) -> float:
    ok = 0
    for _ in range(trials):
        probs, soft_logits = received_fn()
        try:
            dec = (
                codec.decode_logits(soft_logits, secret)
                if soft_logits is not None
                else codec.decode(probs, secret)
            )
            ok += dec.verified
        except PayloadNotFoundError:
            pass
    return ok / trials


def channel_report(dim: int, trials: int, rng: np.random.Generator) -> None:
    codec, secret = PayloadCodec(dim), Secret(rng.bytes(32), "key")
    enc = codec.encode(rng.standard_normal(dim), secret)
    bits = enc.bits.astype(np.float64)
    print(f"\n## {codec}: success rate over {trials} trials")
    for ber in (0.01, 0.02, 0.025, 0.03, 0.035, 0.04):
        sigma = 1 / statistics.NormalDist().inv_cdf(1 - ber)

        def hard(ber=ber):
            return np.abs(bits - (rng.random(bits.size) < ber)), None

        def soft(sigma=sigma):
            y = 2 * bits - 1 + sigma * rng.standard_normal(bits.size)
            return None, 2 * y / sigma**2

        print(
            f"random BER {ber:.3f}: hard bits {success_rate(codec, enc, secret, hard, trials):.2f}   "
            f"Gaussian-channel logits {success_rate(codec, enc, secret, soft, trials):.2f}"
        )
    for length in (200, 300, 400, 480, 540, 640):
        for soft in (False, True):

            def burst(length=length, soft=soft):
                out = np.abs(bits - (rng.random(bits.size) < 0.002))
                start = rng.integers(0, bits.size - length)
                out[start : start + length] = (
                    rng.uniform(0.4, 0.6, length) if soft else rng.integers(0, 2, length)
                )
                return out, None

            rate = success_rate(codec, enc, secret, burst, trials)
            print(
                f"burst {length} bits + 0.2% random, "
                f"{'marked unsure' if soft else 'hard garbage'}: {rate:.2f}"
            )


def timing_report(rng: np.random.Generator) -> None:
    params = KDF_PARAMETER_SETS[kdf.PASSWORD_KDF_ID]
    times = []
    for _ in range(5):
        t = time.perf_counter()
        params.derive(b"password", rng.bytes(8))
        times.append(time.perf_counter() - t)
    print(f"\n## KDF {params}: median {1000 * statistics.median(times):.0f} ms over 5")
    for dim in (128, 512):
        codec, secret = PayloadCodec(dim), Secret(rng.bytes(32), "key")
        x = rng.standard_normal(dim)
        t = time.perf_counter()
        enc = codec.encode(x, secret)
        t_enc = time.perf_counter() - t
        noisy = enc.bits ^ (rng.random(codec.n_bits) < 0.02)
        t = time.perf_counter()
        codec.decode(noisy, secret)
        print(
            f"dim {dim}: encode {1000 * t_enc:.1f} ms, "
            f"decode at 2% BER {1000 * (time.perf_counter() - t):.1f} ms (key file)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/lfw/lfw-deepfunneled"
    )
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for dim in (128, 512):
        c = PayloadCodec(dim)
        print(
            f"dim {dim}: frame {c.frame_bytes} bytes, {c.ecc.codewords} RS codeword(s) "
            f"with {c.ecc.nsym} parity bytes, "
            f"{c.n_bits} channel bits, rate {c.ecc.code_rate:.3f}"
        )
    timing_report(rng)
    sets = {f"unit Gaussian {d}": synthetic(d, 1000, False, rng) for d in (128, 512)}
    sets |= {f"heavy-tailed t3 + offset {d}": synthetic(d, 1000, True, rng) for d in (128, 512)}
    if args.lfw.is_dir():
        sets |= lfw_embeddings(args.lfw, args.faces)
    quantisation_report(sets)
    channel_report(128, args.trials, rng)
    channel_report(512, args.trials // 2, rng)


if __name__ == "__main__":
    main()
