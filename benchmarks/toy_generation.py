"""Toy-world generation throughput: images/s at batch 1 vs batch 16, side by side.

    PYTHONPATH=src python benchmarks/toy_generation.py [--steps N] [--threads T]

Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from erasekit.toyworld import TOY_DEFAULTS, load_pipeline  # noqa: E402


def _run(pipe, batch: int, n_images: int, seed0: int) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < n_images:
        gens = [torch.Generator().manual_seed(seed0 + done + i) for i in range(batch)]
        pipe(["a red circle"] * batch, generator=gens, output_type="np", **TOY_DEFAULTS)
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32, help="images per setting")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline()
    _run(pipe, 1, 2, 10_000)  # warm-up
    _run(pipe, 16, 16, 10_000)
    b1 = _run(pipe, 1, args.images, 0)
    b16 = _run(pipe, 16, args.images, 0)
    print(
        json.dumps(
            {
                "benchmark": "toy_generation",
                "images_per_s_batch1": round(b1, 2),
                "images_per_s_batch16": round(b16, 2),
                "ratio_batch16_over_batch1": round(b16 / b1, 2),
                "images_per_setting": args.images,
                "threads": args.threads,
                **{k: v for k, v in TOY_DEFAULTS.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
