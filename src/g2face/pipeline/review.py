"""Contact sheet for checking an anonymized image at a glance: the output with every detected face
boxed and numbered in its action's colour (a fake to review in its own), above a legend that lists
each face's action and, for a fake to review, what to check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from g2face.pipeline.g2face import FaceDecision

REVIEW_SUFFIX = ".review.png"

ACTION_COLOURS = {  # RGB
    "anonymized": (40, 170, 40),
    "small-face fallback": (230, 150, 0),
    "turned-face fallback": (230, 150, 0),
    "exempt": (220, 30, 30),  # left exposed: the one a reviewer must confirm
}
TO_REVIEW_COLOUR = (170, 40, 200)  # RGB: a fake that misses some of its goals (`AnonymizedFace.shortfalls`)


def _to_check(decision: FaceDecision) -> tuple[str, ...]:
    """What a person should check on this face's fake (empty for none, and for an untouched face)."""
    return () if decision.face is None else decision.face.shortfalls


def _colour(decision: FaceDecision) -> tuple[int, int, int]:
    return TO_REVIEW_COLOUR if _to_check(decision) else ACTION_COLOURS[decision.action]


def _wrapped(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """`text` split at spaces into lines no wider than `width` pixels (a word wider stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(joined, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def _label(index: int, decision: FaceDecision) -> str:
    parts = [f"#{index} {decision.action}"]
    if decision.method is not None:
        parts.append(decision.method)
    if decision.match is not None:
        ambiguous = " (ambiguous)" if decision.match.ambiguous else ""
        parts.append(f"match {decision.match.score:.2f}{ambiguous}")
    if _to_check(decision):
        parts.append("check: " + "; ".join(_to_check(decision)))
    return ", ".join(parts)


def review_sheet(image: np.ndarray, decisions: Sequence[FaceDecision]) -> np.ndarray:
    """RGB uint8 sheet: `image` with numbered boxes coloured by action, and a legend below it."""
    height, width = image.shape[:2]
    scale = max(0.4, min(1.2, width / 1000))
    thickness = max(1, round(scale * 2))
    line = int(28 * scale) + 4
    canvas = np.ascontiguousarray(image.copy())
    for i, decision in enumerate(decisions):
        colour = _colour(decision)
        x0, y0, x1, y1 = (round(v) for v in decision.detection.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        text = f"#{i}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y0 - th - 2 * thickness)
        cv2.rectangle(canvas, (x0, top), (x0 + tw + 2 * thickness, top + th + 2 * thickness), colour, -1)
        cv2.putText(
            canvas, text, (x0 + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (255, 255, 255), thickness, cv2.LINE_AA,
        )  # fmt: skip
    counts = {a: sum(d.action == a for d in decisions) for a in ACTION_COLOURS}
    plural = "s" if len(decisions) != 1 else ""
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    lines = [(f"{len(decisions)} face{plural}: {summary}", (0, 0, 0))]
    lines += [(_label(i, d), _colour(d)) for i, d in enumerate(decisions)]
    if not decisions:
        lines = [("no face detected", (0, 0, 0))]
    # long labels (what to check on a fake) wrap to the image's width rather than run off it
    room = width - line
    lines = [
        (part, c) for text, c in lines for part in _wrapped(text, room, scale * 0.8, max(1, thickness - 1))
    ]
    legend = np.full((line * len(lines) + line // 2, width, 3), 255, np.uint8)
    for row, (text, colour) in enumerate(lines):
        cv2.putText(
            legend, text, (line // 2, line * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, colour,
            max(1, thickness - 1), cv2.LINE_AA,
        )  # fmt: skip
    return np.concatenate([canvas, legend])
