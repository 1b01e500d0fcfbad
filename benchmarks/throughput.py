"""Generation and scoring at the hardware's limit: erasekit's engine vs a plain diffusers loop, overlap on vs off.

    python benchmarks/throughput.py [--batches 4] [--sd-steps 4] [--sd-size 64] [--no-sd]

Prints ONE JSON line. Every figure is measured side by side in this one run, on the same weights,
batch size, dtype and steps; the ratios are what to compare across machines:

- ``engine_over_plain_pipeline``: images/s of erasekit's engine (pipeline call, PNG + sidecar
  written atomically to the content-addressed cache, overlap on) over a plain diffusers
  ``StableDiffusionPipeline`` loop that calls the pipe on the same batches and saves each PNG
  with ``Image.save`` — per model (``toy``; ``sd14_shaped``: a random model with SD v1.4's exact
  UNet/VAE/text-encoder configs at ``--sd-size`` px; ``sd14_512_cuda`` with ``compile`` when a GPU is present).
- ``overlap_speedup``: wall time of generate + score without overlap over with it, as the runner
  does it — ``toy``: a whole ``erasekit run`` of ``asr_custom`` (toy judge); ``sd14_shaped``: the
  engine then NudeNet. On a CPU the runner overlaps only the PNG writes (a judge on a second
  thread competes for the same cores; ``details.sd14_shaped_overlap_judge_beside_on_cpu`` measures
  that); on a GPU it also judges each committed batch on the scoring thread.
- ``bound``: the most overlap can give, (generation + scoring) / max(generation, scoring), from
  the measured parts: when scoring is a small share of the time, no overlap can do better.
- ``nudity_benchmark_projection`` (GPU only): the wall time of ``examples/mace_nudity_multi.json``
  projected from the measured images/s and its image count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from erasekit.generation import ImageCache, ImageGenerator, ImageRequest, sampler_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [f"a {c} {s}" for s in ("circle", "square", "triangle", "cross") for c in ("red", "green", "blue", "yellow")]


def _requests(n: int, offset: int = 0) -> list[ImageRequest]:
    return [ImageRequest(PROMPTS[i % len(PROMPTS)], seed=offset + i) for i in range(n)]


def plain_loop(pipe: Any, requests: list[ImageRequest], batch: int, steps: int, guidance: float, size: int, out: Path) -> float:
    """images/s of the plain diffusers loop a benchmark script would write (same batches, PNGs saved)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(requests), batch):
            part = requests[i : i + batch]
            gens = [torch.Generator("cpu").manual_seed(r.seed) for r in part]
            images = pipe(prompt=[r.prompt for r in part], num_inference_steps=steps, guidance_scale=guidance, height=size,
                          width=size, generator=gens).images
            for r, im in zip(part, images, strict=True):
                im.save(out / f"{r.seed}.png")
    return len(requests) / (time.perf_counter() - t0)


def engine(pipe: Any, requests: list[ImageRequest], batch: int, steps: int, guidance: float, size: int, root: Path,
           overlap: bool = True, on_batch: Any = None) -> tuple[float, Any]:
    sampler = sampler_settings(pipe, steps, guidance, size, size, batch_size=batch)
    gen = ImageGenerator(pipe, "bench", sampler, ImageCache(root), batch_size=batch, show_progress=False, overlap=overlap,
                         on_batch=on_batch)
    t0 = time.perf_counter()
    images, stats = gen.generate(requests)
    return stats.generated / (time.perf_counter() - t0), images


def engine_ratio(pipe: Any, batch: int, batches: int, steps: int, guidance: float, size: int, rounds: int = 3) -> dict[str, Any]:
    """Plain loop and engine alternated ``rounds`` times on fresh requests (after one warm-up call);
    the ratio is the median of the per-round ratios, so drift and order effects cancel."""
    plain, ours, ours_no, ratios = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine(pipe, _requests(batch, 10_000), batch, steps, guidance, size, root / "warm")  # kernels, allocator
        n = batch * batches
        for k in range(rounds):
            plain.append(plain_loop(pipe, _requests(n, 20_000 + 1000 * k), batch, steps, guidance, size, root / f"plain{k}"))
            ours.append(engine(pipe, _requests(n, 40_000 + 1000 * k), batch, steps, guidance, size, root / f"engine{k}")[0])
            ours_no.append(engine(pipe, _requests(n, 60_000 + 1000 * k), batch, steps, guidance, size, root / f"no{k}",
                                  overlap=False)[0])
            ratios.append(ours[-1] / plain[-1])
    return {"plain_images_per_s": [round(x, 3) for x in plain], "engine_images_per_s": [round(x, 3) for x in ours],
            "engine_no_overlap_images_per_s": [round(x, 3) for x in ours_no], "ratio": round(sorted(ratios)[len(ratios) // 2], 3),
            "images_per_round": n, "rounds": rounds, "batch_size": batch, "steps": steps, "size": size,
            "dtype": str(pipe.unet.dtype).removeprefix("torch.")}


# ------------------------------------------------------------------ overlap, toy: a whole erasekit run


def toy_run(tmp: Path, overlap: bool, images_per_prompt: int) -> dict[str, Any]:
    from erasekit.cli import main

    cfg = {"output_dir": str(tmp / f"run_{overlap}"), "cache_dir": str(tmp / f"cache_{overlap}"), "batch_size": 16,
           "overlap": overlap, "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu"}},
           "metric": {"name": "asr_custom", "config": {"prompts": PROMPTS, "images_per_prompt": images_per_prompt,
                                                       "concept": "circle", "detector": "toy_judge"}}}
    path = tmp / f"run_{overlap}.json"
    path.write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    if main(["run", str(path), "--no-progress"]) != 0:
        raise RuntimeError("the toy asr_custom run failed")
    wall = time.perf_counter() - t0
    report = json.loads((tmp / f"run_{overlap}" / "report.json").read_text())
    split = report["throughput"]["time_split"]
    return {"wall_s": round(wall, 2), "generation_s": split["generation"], "scoring_s": split["scoring"],
            "scoring_beside_generation_s": split["scoring_beside_generation"], "value": report["metrics"]["asr_custom"]["value"]}


def toy_overlap(images_per_prompt: int) -> dict[str, Any]:
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(2):  # alternated, each from an empty cache; the faster of two counts (warm-up, drift)
        for flag in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                runs[flag].append(toy_run(Path(tmp), flag, images_per_prompt))
    off, on = (min(runs[f], key=lambda r: r["wall_s"]) for f in (False, True))
    gen, score = off["generation_s"], off["scoring_s"]
    return {"without": off, "with": on, "speedup": round(off["wall_s"] / on["wall_s"], 3),
            "bound": round((gen + score) / max(gen, score), 3), "same_value": off["value"] == on["value"]}


# ------------------------------------------------------------------ SD-v1.4 shape


def sd14_pipe(device: str, dtype: torch.dtype) -> Any:
    """A random pipeline with SD v1.4's exact UNet, VAE and ViT-L/14 text configs and the real CLIP tokenizer."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    from erasekit.models.sd_shapes import (
        SD_SCHEDULER_CONFIG,
        SD_VAE_CONFIG,
        sd14_text_encoder,
        sd14_unet,
        sd_clip_tokenizer,
    )

    tok = sd_clip_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(vae=AutoencoderKL(**SD_VAE_CONFIG).eval(), text_encoder=sd14_text_encoder(1), tokenizer=tok,
                                   unet=sd14_unet(0), scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device, dtype)
    if device == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    return pipe


def sd_overlap(pipe: Any, batch: int, batches: int, steps: int, size: int, judge_beside: bool) -> dict[str, Any] | None:
    """Generate + NudeNet judge. Sequential: the engine without overlap, then the judge. Overlapped: the
    engine's writer threads and, with ``judge_beside`` (the runner does it on accelerators only), the
    judge on a scoring thread for each committed batch."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        from erasekit.detectors.nudenet import NudeNetDetector

        NudeNetDetector()
    except Exception as exc:  # noqa: BLE001 - nudenet is optional
        return {"skipped": f"NudeNet unavailable ({exc.__class__.__name__})"}
    from erasekit.generation import GeneratedImage

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, images = engine(pipe, _requests(batch * batches, 70_000), batch, steps, 7.5, size, Path(tmp) / "a", overlap=False)
        t_gen = time.perf_counter() - t0
        t1 = time.perf_counter()
        seq = NudeNetDetector().detect_cached(images, "nudity")
        t_score = time.perf_counter() - t1
        sequential = time.perf_counter() - t0
        judge = NudeNetDetector()
        pool = ThreadPoolExecutor(1)
        jobs = []

        def on_batch(done: list[Any]) -> None:
            imgs = [GeneratedImage(request=c.request, key=c.key, path=c.path, reused=False, _image=c.image) for c in done]
            jobs.append(pool.submit(judge.prefetch, imgs, "nudity"))

        t0 = time.perf_counter()
        _, images2 = engine(pipe, _requests(batch * batches, 70_000), batch, steps, 7.5, size, Path(tmp) / "b",
                            on_batch=on_batch if judge_beside else None)
        for j in jobs:
            j.result()
        ov = judge.detect_cached(images2, "nudity")
        overlapped = time.perf_counter() - t0
        pool.shutdown()
    return {"judge_beside_generation": judge_beside, "sequential_s": round(sequential, 2), "generation_s": round(t_gen, 2),
            "scoring_s": round(t_score, 2), "overlapped_s": round(overlapped, 2), "speedup": round(sequential / overlapped, 3),
            "bound": round((t_gen + t_score) / max(t_gen, t_score), 3),
            "same_verdicts": [d.scores for d in seq] == [d.scores for d in ov]}


def nudity_projection(images_per_s: float) -> dict[str, Any]:
    """Images examples/mace_nudity_multi.json generates (its metrics' requests, deduplicated) → wall time."""
    from erasekit.config import load_config

    run = load_config(REPO / "examples" / "mace_nudity_multi.json")
    n = sum(int(getattr(m.config, "limit", 0) or 0) * int(getattr(m.config, "images_per_prompt", 1) or 1) for m in run.metrics)
    return {"images_estimated": n, "images_per_s": round(images_per_s, 3), "hours": round(n / images_per_s / 3600, 2),
            "note": "per model; compare_to_base doubles it"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=4, help="batches per measurement (the SD shape: half of it)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated plain/engine rounds; the median ratio is reported")
    ap.add_argument("--toy-batch", type=int, default=16)
    ap.add_argument("--sd-batch", type=int, default=2)
    ap.add_argument("--sd-steps", type=int, default=4)
    ap.add_argument("--sd-size", type=int, default=64)
    ap.add_argument("--images-per-prompt", type=int, default=8, help="toy asr_custom run: 16 prompts x this many images")
    ap.add_argument("--no-sd", action="store_true", help="skip the SD-v1.4-shaped measurements (about 2 minutes on 2 CPU cores)")
    args = ap.parse_args()

    from erasekit.toyworld import TOY_DEFAULTS, load_pipeline

    toy = load_pipeline()
    toy.set_progress_bar_config(disable=True)
    out: dict[str, Any] = {"benchmark": "throughput", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                                   "torch_threads": torch.get_num_threads(),
                                                                   "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    ratios: dict[str, Any] = {}
    overlap: dict[str, Any] = {}
    details: dict[str, Any] = {}
    details["toy_engine"] = engine_ratio(toy, args.toy_batch, args.batches, TOY_DEFAULTS["num_inference_steps"],
                                         TOY_DEFAULTS["guidance_scale"], TOY_DEFAULTS["height"], rounds=args.rounds)
    ratios["toy"] = details["toy_engine"]["ratio"]
    details["toy_overlap"] = toy_overlap(args.images_per_prompt)
    overlap["toy"] = details["toy_overlap"]["speedup"]
    if not args.no_sd:
        sd = sd14_pipe("cpu", torch.float32)
        details["sd14_shaped_engine"] = engine_ratio(sd, args.sd_batch, max(1, args.batches // 2), args.sd_steps, 7.5, args.sd_size,
                                                     rounds=args.rounds)
        ratios["sd14_shaped"] = details["sd14_shaped_engine"]["ratio"]
        details["sd14_shaped_overlap"] = sd_overlap(sd, args.sd_batch, args.batches, args.sd_steps, args.sd_size, False)
        overlap["sd14_shaped"] = (details["sd14_shaped_overlap"] or {}).get("speedup")
        # why the runner does not judge beside generation on a CPU: the judge competes for the same cores
        details["sd14_shaped_overlap_judge_beside_on_cpu"] = sd_overlap(sd, args.sd_batch, args.batches, args.sd_steps,
                                                                        args.sd_size, True)
        del sd
    if torch.cuda.is_available():
        gpu = sd14_pipe("cuda", torch.float16)
        details["sd14_512_cuda_fp16_engine"] = engine_ratio(gpu, 8, args.batches, 50, 7.5, 512)
        ratios["sd14_512_cuda_fp16"] = details["sd14_512_cuda_fp16_engine"]["ratio"]
        details["sd14_512_cuda_fp16_overlap"] = sd_overlap(gpu, 8, args.batches, 50, 512, True)
        overlap["sd14_512_cuda_fp16"] = (details["sd14_512_cuda_fp16_overlap"] or {}).get("speedup")
        gpu.unet.compile()
        details["sd14_512_cuda_fp16_compile_engine"] = engine_ratio(gpu, 8, args.batches, 50, 7.5, 512)
        ratios["sd14_512_cuda_fp16_compile"] = details["sd14_512_cuda_fp16_compile_engine"]["ratio"]
        out["nudity_benchmark_projection"] = nudity_projection(
            max(details["sd14_512_cuda_fp16_compile_engine"]["engine_images_per_s"]))
    else:
        out["gpu"] = "no CUDA device: the SD-v1.4 512 px fp16 and compile figures need one"
    out["engine_over_plain_pipeline"] = ratios
    out["overlap_speedup"] = overlap
    out["details"] = details
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
