"""The run folder of an evaluation: `metrics.json` (every number with its protocol, sample size and
recognizer), `report.md` (methods × metrics tables), ROC curves per recognizer and an image grid."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from g2face.evaluation.metrics import Roc  # noqa: E402
from g2face.evaluation.protocols import Metric  # noqa: E402


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics_json(path: Path, metrics: Sequence[Metric], meta: dict) -> None:
    def clean(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    rows = [{k: clean(v) for k, v in asdict(m).items()} for m in metrics]
    _atomic_write(path, json.dumps({"meta": meta, "metrics": rows}, indent=1))


def _cell(m: Metric, show_n: bool) -> str:
    if not math.isfinite(m.value):
        text = "–"
    else:
        fmt = ".2f" if abs(m.value) >= 10 else ".3g" if 0 < abs(m.value) < 1e-2 else ".4f"  # KID is tiny
        text = f"{m.value:{fmt}}" + (f" ± {m.std:{fmt}}" if m.std else "")
    return text + (f" (n={m.n})" if show_n else "")


def markdown_tables(metrics: Sequence[Metric]) -> str:
    """One table per (protocol, recognizer): rows are methods, columns metric names; a column's
    sample size goes in its header when every method shares it, else into each cell."""
    groups: dict[tuple[str, str | None], list[Metric]] = {}
    for m in metrics:
        groups.setdefault((m.protocol, m.recognizer), []).append(m)
    parts = []
    for (protocol, recognizer), group in groups.items():
        title = protocol if recognizer is None else f"{protocol} — {recognizer}"
        if any(m.white_box for m in group):
            title += " (white-box: the model trained against this recognizer)"
        names = list(dict.fromkeys(m.name for m in group))
        methods = list(dict.fromkeys(m.method for m in group))
        cells = {(m.method, m.name): m for m in group}
        header, uniform = [], {}
        for name in names:
            ns = {m.n for m in group if m.name == name}
            uniform[name] = len(ns) == 1
            header.append(f"{name} (n={ns.pop()})" if uniform[name] else name)
        lines = [
            f"### {title}",
            "",
            "| method | " + " | ".join(header) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for method in methods:
            row = [_cell(cells[method, n], not uniform[n]) if (method, n) in cells else "" for n in names]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        notes = sorted({m.note for m in group if m.note})
        parts.append("\n".join(lines + ([""] + [f"*{n}*" for n in notes] if notes else [])))
    return "\n\n".join(parts) + "\n"


def write_report_md(path: Path, metrics: Sequence[Metric], meta: dict, figures: Sequence[str]) -> None:
    head = [
        "# g2face evaluation",
        "",
        *(f"- {k}: {v}" for k, v in meta.items()),
        "",
        "Re-identification: the first image of each LFW pair is anonymized and compared with the original "
        "second image; thresholds are set per fold on original pairs of the other folds. Lower is more "
        "anonymous; `original` is the recognizer on unmodified pairs, `none` the pipeline with no "
        "anonymization. Pixel metrics use the [0, 1] scale; PSNR of identical crops is capped at 100 dB. "
        "`lpips_hed` is a surrogate LPIPS on HED's VGG16, not comparable with published LPIPS.",
        "",
    ]
    body = markdown_tables(metrics)
    images = "\n".join(f"![{Path(f).stem}]({f})" for f in figures)
    _atomic_write(path, "\n".join(head) + "\n" + body + "\n" + images + "\n")


def plot_rocs(folder: Path, rocs: dict[str, dict[str, Roc]]) -> list[str]:
    """One PNG per recognizer, log-scale FAR; returns the file names."""
    names = []
    for recognizer, curves in rocs.items():
        fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
        for label, roc in curves.items():
            ax.plot(np.maximum(roc.far, 1e-4), roc.tar, label=f"{label} (AUC {roc.auc:.3f})")
        ax.set(
            xscale="log",
            xlim=(1e-4, 1),
            ylim=(0, 1.01),
            xlabel="false accept rate",
            ylabel="true accept rate",
        )
        ax.set_title(f"LFW re-identification — {recognizer}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        name = f"roc_{recognizer}.png"
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)
        names.append(name)
    return names


def save_grid(path: Path, columns: dict[str, list[np.ndarray]], cell: int = 128) -> None:
    """Rows are faces, columns the labelled versions of each face (original, each method, …)."""
    n_rows = max(len(v) for v in columns.values())
    label_h = 20
    canvas = np.full((label_h + n_rows * cell, len(columns) * cell, 3), 255, np.uint8)
    for c, (label, crops) in enumerate(columns.items()):
        x = c * cell
        cv2.putText(canvas, label[:18], (x + 3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for r, crop in enumerate(crops):
            y = label_h + r * cell
            canvas[y : y + cell, x : x + cell] = cv2.resize(crop, (cell, cell), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), canvas[..., ::-1]):
        raise OSError(f"could not write {path}")
