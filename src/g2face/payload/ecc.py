"""Reed-Solomon protection of the payload frame, sized for a design bit-error rate.

The frame is split over as few RS(n <= 255) codewords over GF(2^8) as the design allows, with
just enough parity that a payload fails with probability <= DESIGN_FAILURE at DESIGN_BER random
bit errors with hard decisions. Codeword bytes are interleaved round-robin and each byte's 8 bits
stay adjacent in the channel: a burst of bad bits then hits few bytes, spread over all codewords.

Soft input: bits are given as probabilities. Bytes holding an uncertain bit are tried as
erasures (an RS code fixes twice as many erasures as errors), least reliable first, always
keeping MIN_SPARE_PARITY parity bytes unused so a wrong decode is still caught.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from reedsolo import ReedSolomonError, RSCodec

DESIGN_BER = 0.02
DESIGN_FAILURE = 1e-4
MIN_SPARE_PARITY = 16
_ERASURE_TRIALS = 8
_MAX_CODEWORD = 255


class UncorrectableError(Exception):
    """More errors than the code can fix."""


@dataclass(frozen=True)
class EccResult:
    data: bytes
    bit_errors: int  # channel bits whose hard decision the code corrected


def _tail(n: int, p: float, t: int) -> float:
    """P(Binomial(n, p) > t)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(t + 1, n + 1))


def _design(data_bytes: int, ber: float, failure: float) -> tuple[int, int]:
    """(codewords, parity bytes per codeword): fewest codewords, then least parity."""
    symbol_error = 1 - (1 - ber) ** 8
    for codewords in range(1, data_bytes + 1):
        k = math.ceil(data_bytes / codewords)
        for nsym in range(MIN_SPARE_PARITY + 2, _MAX_CODEWORD - k + 1, 2):
            if codewords * _tail(k + nsym, symbol_error, nsym // 2) <= failure:
                return codewords, nsym
    raise AssertionError("unreachable: one byte per codeword always fits")


class InterleavedReedSolomon:
    def __init__(self, data_bytes: int, ber: float = DESIGN_BER, failure: float = DESIGN_FAILURE):
        self.data_bytes = data_bytes
        self.codewords, self.nsym = _design(data_bytes, ber, failure)
        base, extra = divmod(data_bytes, self.codewords)
        self.data_sizes = [base + (i < extra) for i in range(self.codewords)]
        self._rs = RSCodec(self.nsym)
        lengths = [k + self.nsym for k in self.data_sizes]
        # channel byte j holds byte `_slot[j]` of the concatenated codewords, round-robin
        starts = np.cumsum([0, *lengths[:-1]])
        self._slot = np.array(
            [starts[c] + j for j in range(max(lengths)) for c in range(self.codewords) if j < lengths[c]]
        )
        self._data_slots = np.concatenate([starts[c] + np.arange(k) for c, k in enumerate(self.data_sizes)])
        self._bounds = list(zip(starts, starts + np.array(lengths), strict=True))

    @property
    def n_bytes(self) -> int:
        return len(self._slot)

    @property
    def n_bits(self) -> int:
        return 8 * self.n_bytes

    @property
    def code_rate(self) -> float:
        return self.data_bytes / self.n_bytes

    def encode(self, data: bytes) -> np.ndarray:
        if len(data) != self.data_bytes:
            raise ValueError(f"expected {self.data_bytes} data bytes, got {len(data)}")
        chunks, start = [], 0
        for k in self.data_sizes:
            chunks.append(bytes(self._rs.encode(data[start : start + k])))
            start += k
        stream = np.frombuffer(b"".join(chunks), np.uint8)
        return np.unpackbits(stream[self._slot])

    def _deinterleave(self, channel_bytes: np.ndarray) -> np.ndarray:
        out = np.empty_like(channel_bytes)
        out[self._slot] = channel_bytes
        return out

    def systematic_data(self, probs: np.ndarray) -> bytes:
        """The data bytes as read, uncorrected (for a best-effort look at a damaged payload)."""
        stream = self._deinterleave(np.packbits(probs >= 0.5))
        return stream[self._data_slots].tobytes()

    def decode(self, probs: np.ndarray) -> EccResult:
        """`probs`: (n_bits,) P(bit = 1). Raises UncorrectableError."""
        hard = np.packbits(probs >= 0.5)
        confidence = np.abs(2 * probs - 1).reshape(-1, 8).min(axis=1)
        stream, reliability = self._deinterleave(hard), self._deinterleave(confidence)
        data = b"".join(
            self._decode_codeword(bytearray(stream[a:b].tobytes()), reliability[a:b]) for a, b in self._bounds
        )
        corrected = np.unpackbits(hard) != self.encode(data)
        return EccResult(data, int(corrected.sum()))

    def _decode_codeword(self, codeword: bytearray, reliability: np.ndarray) -> bytes:
        order = np.argsort(reliability, kind="stable")
        # Fully confident bytes (hard 0/1 input) carry no hint of where errors are.
        uncertain = int((reliability < 1).sum())
        max_erasures = min(self.nsym - MIN_SPARE_PARITY, uncertain)
        step = max(2, (self.nsym - MIN_SPARE_PARITY) // _ERASURE_TRIALS)
        for n_erasures in range(0, max_erasures + 1, step):
            erasures = order[:n_erasures].tolist() or None
            try:
                message, _, _ = self._rs.decode(bytearray(codeword), erase_pos=erasures)
            except ReedSolomonError:
                continue
            return bytes(message)
        raise UncorrectableError
