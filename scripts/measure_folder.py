"""Anonymize a folder of photos with the shipped default and report wall clock, CPU use of the two
cores and resident memory over time (issue #17: "folder of 200 LFW photos: both cores busy, RSS flat").

    python scripts/measure_folder.py ../shared/data/lfw --photos 200 --out runs/folder

Photos are taken spread over the folder (sorted, every k-th). The outputs go to a temporary folder
that is removed afterwards; the figures go to `--out`/folder.json and a plot `folder_rss.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from g2face.io import expand_inputs
from g2face.payload import Secret
from g2face.pipeline.g2face import G2FacePipeline, anonymize_files


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/folder"))
    args = parser.parse_args()
    photos = sorted(p for p in args.folder.rglob("*.jpg"))
    if not photos:
        raise SystemExit(f"no .jpg photos under {args.folder}")
    photos = photos[:: max(1, len(photos) // args.photos)][: args.photos]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="g2face-folder-"))
    try:
        source = work / "in"
        source.mkdir()
        for i, p in enumerate(photos):  # links: the inputs stay where they are
            (source / f"{i:04d}_{p.name}").symlink_to(p.resolve())
        pipeline = G2FacePipeline.from_pretrained("g2face-lite")
        secret = Secret(os.urandom(32), "key")
        process = psutil.Process()
        samples: list[tuple[float, float, float, int]] = []  # (t, rss MB, cpu s, files done)
        done = 0
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                cpu = process.cpu_times()
                samples.append(
                    (
                        time.perf_counter() - start,
                        process.memory_info().rss / 2**20,
                        cpu.user + cpu.system,
                        done,
                    )
                )
                stop.wait(0.5)

        def progress(_outcome) -> None:
            nonlocal done
            done += 1
            if done % 10 == 0:
                print(f"{done}/{len(photos)} photos, {time.perf_counter() - start:.0f} s", flush=True)

        start = time.perf_counter()
        cpu0 = process.cpu_times()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        report = anonymize_files(pipeline, expand_inputs([source]), work / "out", secret, on_outcome=progress)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        cpu1 = process.cpu_times()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    faces = sum(o.result.faces for o in report.succeeded)
    rss = [s[1] for s in samples]
    quarter = [rss[int(q * (len(rss) - 1))] for q in (0.25, 0.5, 0.75, 1.0)]
    result = {
        "photos": len(photos),
        "faces": faces,
        "failed": len(report.failed),
        "wall_s": round(wall, 1),
        "s_per_photo": round(wall / len(photos), 2),
        "cpu_s": round(cpu, 1),
        "cores_busy": round(cpu / wall, 2),
        "cores": os.cpu_count(),
        "rss_mb_at_25_50_75_100_percent": [round(r) for r in quarter],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    (args.out / "folder.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([s[0] for s in samples], rss)
        ax.set_xlabel("seconds")
        ax.set_ylabel("resident memory, MB")
        ax.set_title(
            f"g2face anonymize, {len(photos)} LFW photos ({result['cores_busy']} cores busy on average)"
        )
        fig.tight_layout()
        fig.savefig(args.out / "folder_rss.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
