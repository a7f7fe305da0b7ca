"""Load check of `g2face serve` (docs/web.md): N concurrent uploads of a 12 MP photo, every one
answered, peak memory of the process, files left in the server's temp space.

The server runs in this process (a thread, as `g2face serve` runs it) with the tiny random model
and the blur method, so the check measures the server, not the model:

    OMP_NUM_THREADS=1 python scripts/measure_web_load.py --uploads 20
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import threading
import time
from pathlib import Path

import httpx2
from PIL import Image

from g2face.models.zoo import build_model, tiny_config
from g2face.pipeline.g2face import G2FacePipeline
from g2face.web import SharedPipelines, WebSettings, background_server, create_app

REPO = Path(__file__).resolve().parents[1]


def twelve_megapixel_jpeg(photo: Path) -> bytes:
    image = Image.open(photo).convert("RGB")
    scale = (12e6 / (image.width * image.height)) ** 0.5
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    print(
        f"photo: {image.width}×{image.height} ({image.width * image.height / 1e6:.1f} MP), "
        f"{len(buffer.getvalue()) / 2**20:.1f} MB JPEG"
    )
    return buffer.getvalue()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--photo", type=Path, default=REPO / "tests/fixtures/grace_hopper.jpg")
    args = parser.parse_args()

    data = twelve_megapixel_jpeg(args.photo)
    pipelines = SharedPipelines.of(G2FacePipeline(build_model(tiny_config())), "tiny")
    pipelines.load()
    with tempfile.TemporaryDirectory() as temp_root:
        app = create_app(WebSettings(temp_root=Path(temp_root)), pipelines)
        print(f"peak RSS before the uploads: {peak_rss_mb():.0f} MB")
        results: dict[int, str] = {}
        started = time.monotonic()
        with background_server(app) as url:

            def upload(i: int) -> None:
                with httpx2.Client(base_url=url, timeout=600) as client:
                    response = client.post(
                        "/api/jobs",
                        data={"action": "anonymize", "method": "blur", "password": "correct horse battery"},
                        files={"photo": (f"big{i}.jpg", data, "image/jpeg")},
                        headers={"X-G2Face": "1"},
                    )
                    if response.status_code != 202:
                        results[i] = f"HTTP {response.status_code}: {response.json()['error']}"
                        return
                    job = response.json()["id"]
                    while (body := client.get(f"/api/jobs/{job}").json())["state"] not in ("done", "failed"):
                        time.sleep(0.5)
                    if body["state"] == "done":
                        size = len(client.get(f"/api/jobs/{job}/download").content)
                        results[i] = (
                            f"done, {len(body['result']['faces'])} face(s), {size / 2**20:.1f} MB download"
                        )
                    else:
                        results[i] = f"failed: {body['error']}"

            threads = [threading.Thread(target=upload, args=(i,)) for i in range(args.uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        left = list(Path(temp_root).rglob("*"))
    elapsed = time.monotonic() - started
    for i in sorted(results):
        print(f"upload {i}: {results[i]}")
    answered = sum(r.startswith("done") for r in results.values())
    print(
        f"{answered} of {args.uploads} done in {elapsed:.0f} s; peak RSS {peak_rss_mb():.0f} MB; "
        f"files left in the temp space: {len(left)}"
    )


if __name__ == "__main__":
    main()
