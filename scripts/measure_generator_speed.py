"""Time one MobileStyleGAN render at 256 px: the reference modules against the fast inference path
(`g2face.priors.mobilestylegan_fast`), interleaved so that both see the same machine load.

Prints the median and minimum per render of each, the load average before and after, and the max
abs difference of the two images.
Run: OMP_NUM_THREADS=2 python scripts/measure_generator_speed.py [--threads 2] [--repeats 10] [--batch 1]
     [--band-rows 8 16 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from g2face.priors import mobilestylegan_fast
from g2face.priors.mobilestylegan import load_mobilestylegan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--band-rows", type=int, nargs="+", default=[mobilestylegan_fast.BAND_ROWS])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_mobilestylegan(args.resolution, progress=False)
    synthesis = generator.synthesis
    wplus = generator.sample_wplus(args.batch, seed=0, truncation_psi=0.7)

    def reference() -> torch.Tensor:
        synthesis.fast_inference = False
        try:
            return synthesis(wplus, None, args.resolution)
        finally:
            synthesis.fast_inference = True

    paths = {"reference": reference}
    for rows in args.band_rows:
        paths[f"fast, {rows}-row bands"] = lambda rows=rows: mobilestylegan_fast.synthesize_pooled(
            synthesis, wplus, args.resolution, rows
        )
    times: dict[str, list[float]] = {name: [] for name in paths}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with torch.no_grad():
        images = {name: path() for name, path in paths.items()}  # warm-up
        for _ in range(args.repeats):
            for name, path in paths.items():
                start = time.perf_counter()
                path()
                times[name].append(time.perf_counter() - start)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{args.resolution} px, batch {args.batch}, {args.threads} threads, {args.repeats} renders each")
    for name, values in times.items():
        difference = (images[name] - images["reference"]).abs().max().item()
        print(
            f"{name:24s} median {1e3 * statistics.median(values):7.1f} ms   min {1e3 * min(values):7.1f} ms"
            f"   max abs difference to the reference {difference:.1e}"
        )


if __name__ == "__main__":
    main()
