"""Generation engine benchmark on the toy world: batching speed-up and cross-metric reuse.

    python benchmarks/generation.py [--images 48] [--batch-size 16] [--threads T] [--generate]

Prints ONE JSON line with, side by side:

1. ``throughput``: images/s through the engine (pipe + PNG cache writes) generating the
   same requests one prompt at a time (batch 1) and batched. Bar: batched ≥ 1.5×.
2. ``reuse``: for the spec's "nudity full benchmark"-shaped config on the toy world
   (same six metrics and limits, concept "circle", model_id toy), the number of images
   a regenerate-per-metric runner makes (sum over metrics of their requests) vs the
   number erasekit makes (unique cache keys on an empty cache, from the engine's plan;
   with ``--generate`` it really generates them and reports the engine's counter).
   A regenerate-per-metric runner also redraws images on every rerun; erasekit then
   makes 0 (second-run row).

Each metric's requests come from its own ``requests()``. A metric whose ``requests()``
is not available yet (NotImplementedError, or it needs an artefact such as the MMA
adversarial-prompt cache) is replaced by a spec-shaped request set built from the
same toy prompt source, and the output says so (``source`` per metric).

Without the trained toy weights (``erasekit.toyworld.PIPELINE_DIR``), a randomly
initialised pipeline of the toy world's exact architecture is used for throughput:
same shapes, same compute, same speed (``weights`` says which).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from erasekit.generation import ImageCache, ImageGenerator, ImageRequest, sampler_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONCEPT = "circle"


# ------------------------------------------------------------------ pipeline


def toy_pipeline() -> tuple[Any, str]:
    """The shipped toy pipeline, or a random-init one of the same architecture."""
    from erasekit.toyworld import PIPELINE_DIR, load_pipeline

    if (Path(PIPELINE_DIR) / "model_index.json").exists():
        return load_pipeline(), "trained toy weights"
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import SCHEDULER_CONFIG, text_config, unet_model, vae_model
    from erasekit.toyworld.tokenizer import build_tokenizer_files, load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(build_tokenizer_files(Path(tempfile.mkdtemp()) / "tok"))
    text = CLIPTextModel(text_config(len(tok), tok.bos_token_id, tok.eos_token_id)).eval()
    pipe = StableDiffusionPipeline(
        vae=vae_model().eval(),
        text_encoder=text,
        tokenizer=tok,
        unet=unet_model((32, 64, 64)).eval(),  # the training recipe's default width
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, "random init, toy architecture (toy weights not trained yet)"


# ------------------------------------------------------------------ 1. throughput


def throughput(pipe: Any, n_images: int, batch_size: int) -> dict[str, Any]:
    from erasekit.toyworld import TOY_DEFAULTS

    sampler = sampler_settings(pipe, TOY_DEFAULTS["num_inference_steps"], TOY_DEFAULTS["guidance_scale"])
    captions = [f"a {c} {s}" for s in ("circle", "square", "triangle", "cross") for c in ("red", "green", "blue", "yellow")]
    requests = [ImageRequest(captions[i % len(captions)], seed=i) for i in range(n_images)]
    out: dict[str, Any] = {"images": n_images, "steps": sampler.num_inference_steps, "size": sampler.height}
    with tempfile.TemporaryDirectory() as tmp:
        warm = ImageGenerator(pipe, "warm", sampler, ImageCache(Path(tmp) / "w"), batch_size=batch_size, show_progress=False)
        warm.generate([ImageRequest("a shape", seed=10_000 + i) for i in range(batch_size)])
        for label, bs in (("one_at_a_time", 1), ("batched", batch_size)):
            gen = ImageGenerator(pipe, "bench", sampler, ImageCache(Path(tmp) / label), batch_size=bs, show_progress=False)
            t0 = time.perf_counter()
            _, stats = gen.generate(requests)
            out[f"images_per_s_{label}"] = round(stats.generated / (time.perf_counter() - t0), 2)
    out["batch_size"] = batch_size
    out["speedup"] = round(out["images_per_s_batched"] / out["images_per_s_one_at_a_time"], 2)
    out["bar_batched_ge_1_5x"] = out["speedup"] >= 1.5
    return out


# ------------------------------------------------------------------ 2. reuse


def full_benchmark_config(out_dir: Path) -> dict[str, Any]:
    """The spec's "Multiple metrics — nudity full benchmark", moved to the toy world."""
    data = REPO / "examples" / "data"
    return {
        "output_dir": str(out_dir),
        "technique": {"name": "mace", "config": {"model_id": "toy", "erase_concept": CONCEPT, "lambda_cfr": 0.1, "device": "cpu"}},
        "metrics": [
            {"name": "asr_i2p", "config": {"device": "cpu", "limit": 500}},
            {"name": "err", "config": {"device": "cpu", "target_limit": 50, "retain_limit": 20, "adversarial_limit": 50}},
            {"name": "fid", "config": {"device": "cpu", "limit": 1000, "allow_small_sample": True}},
            {"name": "clip_score", "config": {"device": "cpu", "limit": 300}},
            {
                "name": "ua_ira",
                "config": {
                    "target_prompts_path": str(data / "toy_circle_target.csv"),
                    "retain_prompts_path": str(data / "toy_square_retain.csv"),
                    "target_concept": CONCEPT,
                    "retain_concept": "square",
                    "device": "cpu",
                },
            },
            {"name": "tifa", "config": {"device": "cpu", "limit": 200}},
        ],
    }


def _csv_requests(path: str) -> list[ImageRequest]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [ImageRequest(r["prompt"], seed=int(r.get("seed") or i)) for i, r in enumerate(rows)]


def _adversarial_csv(data: dict[str, Any], pipe: Any, tmp: Path) -> str:
    """ERR's robustness arm without running the MMA attack (GCG: many minutes on CPU, and it
    changes only the prompt text, never how many images there are or what they share):
    one stand-in adversarial prompt per target row, with the row's seed, as the attack
    would give (the first ``adversarial_limit`` target rows)."""
    from erasekit.config import resolve_config
    from erasekit.metrics.base import MetricContext

    run = resolve_config(data)
    m = run.metrics[1]
    cfg = m.config
    try:
        ctx = MetricContext(run=run, pipe=pipe, model_fingerprint="x", detectors=None, cache_dir=run.cache_dir)
        targets = [(it.prompt, it.seed) for it in m.cls(cfg, ctx).target_items()]
    except Exception:  # noqa: BLE001 - err not available: its toy target source
        from erasekit.datasets import toy

        targets = [(it.prompt, it.seed if it.seed is not None else i) for i, it in enumerate(toy.toy_target_prompts(CONCEPT))]
    rows = targets[: cfg.adversarial_limit]
    path = tmp / "adversarial.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "seed"])
        w.writerows([(f"adversarial stand-in for {p}", s) for p, s in rows])
    return str(path)


def fallback_requests(name: str, cfg: Any) -> list[ImageRequest]:
    """Spec-shaped request sets from the toy prompt sources (used only when a metric's
    requests() is not available). Seeds as in metrics.common.prompt_requests: the row's
    seed, else its index."""
    from erasekit.datasets import toy
    from erasekit.metrics.common import prompt_requests

    if name == "asr_i2p":
        return prompt_requests(toy.toy_i2p(CONCEPT, cfg.limit), cfg.images_per_prompt)
    if name == "err":
        adversarial = [ImageRequest(f"<adversarial prompt {i}>", seed=i) for i in range(cfg.adversarial_limit)]
        return (
            prompt_requests(toy.toy_target_prompts(CONCEPT, cfg.target_limit))
            + prompt_requests(toy.toy_retain_prompts(CONCEPT, cfg.retain_limit))
            + adversarial
        )
    if name in ("fid", "clip_score"):
        return prompt_requests(toy.toy_coco_captions(cfg.limit), 1, row_guidance=False)
    if name == "ua_ira":
        return _csv_requests(cfg.target_prompts_path) + _csv_requests(cfg.retain_prompts_path)
    if name == "tifa":
        return [ImageRequest(it.caption, seed=i) for i, it in enumerate(toy.toy_tifa(cfg.limit))]
    raise KeyError(name)


def reuse(pipe: Any, generate: bool, batch_size: int) -> dict[str, Any]:
    from erasekit.config import resolve_config
    from erasekit.metrics.base import MetricContext

    with tempfile.TemporaryDirectory() as tmp:
        data = full_benchmark_config(Path(tmp) / "out")
        data["metrics"][1]["config"]["adversarial_prompts_path"] = _adversarial_csv(data, pipe, Path(tmp))
        run = resolve_config(data)
        norm = run.normalised()["technique"]["config"]
        sampler = sampler_settings(pipe, norm["num_inference_steps"], norm["guidance_scale"])
        fingerprint = "benchmark-toy-mace-circle"
        per_metric: dict[str, Any] = {}
        all_requests: list[ImageRequest] = []
        keysets: dict[str, set[str]] = {}
        for m in run.metrics:
            ctx = MetricContext(run=run, pipe=pipe, model_fingerprint=fingerprint, detectors=None, cache_dir=run.cache_dir)
            try:
                reqs = list(m.cls(m.config, ctx).requests())
                source = "metric.requests()"
            except Exception as exc:  # noqa: BLE001 - a metric not implemented yet: spec-shaped stand-in
                reqs = fallback_requests(m.name, m.config)
                source = f"fallback from toy prompt source ({exc.__class__.__name__}: {str(exc)[:80]})"
            keysets[m.key] = {ImageCache.key(fingerprint, r, sampler, run.raw.seed) for r in reqs}
            per_metric[m.key] = {"requests": len(reqs), "source": source}
            all_requests += reqs
        for k, keys in keysets.items():
            others = set().union(*(v for j, v in keysets.items() if j != k))
            per_metric[k]["shared_with_other_metrics"] = len(keys & others)
        cache = ImageCache(Path(tmp) / "cache")
        gen = ImageGenerator(pipe, fingerprint, sampler, cache, run_seed=run.raw.seed, batch_size=batch_size, show_progress=sys.stderr.isatty())
        unique, missing = gen.plan(all_requests)
        erasekit_first = len(missing)
        if generate:
            _, stats = gen.generate(all_requests)
            erasekit_first = stats.generated
            _, again = gen.generate(all_requests)
            second = again.generated
        else:
            second = None
    per_metric_total = len(all_requests)
    sharing = sum(1 for v in per_metric.values() if v["shared_with_other_metrics"] > 0)
    # Per image: how many metrics ask for it. A regenerate-per-metric runner makes an image
    # requested by k metrics k times (once per metric, more if a metric repeats it),
    # erasekit once: on each group the ratio is the number of metrics sharing its prompts.
    groups: dict[int, dict[str, int]] = {}
    for key in set().union(*keysets.values()):
        k = sum(key in v for v in keysets.values())
        g = groups.setdefault(k, {"images": 0, "regenerate_per_metric_images": 0})
        g["images"] += 1
        g["regenerate_per_metric_images"] += k
    by_sharing = {f"requested_by_{k}_metrics": {**g, "ratio": round(g["regenerate_per_metric_images"] / g["images"], 3)}
                  for k, g in sorted(groups.items())}
    return {
        "config": "spec 'nudity full benchmark' shape on the toy world (mace, circle); err's adversarial arm "
        "reads one stand-in prompt per target row instead of running the MMA attack",
        "per_metric": per_metric,
        "regenerate_per_metric_images": per_metric_total,
        "erasekit_images_first_run": erasekit_first,
        "erasekit_images_second_run": second if generate else "0 (not run; pass --generate)",
        "regenerate_per_metric_images_second_run": per_metric_total,
        "ratio": round(per_metric_total / max(erasekit_first, 1), 3),
        "metrics_sharing_prompts": sharing,
        "by_sharing": by_sharing,
        "within_metric_duplicates": per_metric_total - sum(g["regenerate_per_metric_images"] for g in groups.values()),
        "counted_by": "engine.generate" if generate else "engine.plan (unique keys missing from an empty cache)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48, help="images per throughput setting")
    ap.add_argument("--batch-size", type=int, default=16, help="batched setting (and --generate)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--generate", action="store_true", help="really generate the full-benchmark images (minutes on CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, weights = toy_pipeline()
    t0 = time.perf_counter()
    tp = throughput(pipe, args.images, args.batch_size)
    t1 = time.perf_counter()
    print(f"throughput done in {t1 - t0:.0f} s: {tp}", file=sys.stderr, flush=True)
    ru = reuse(pipe, args.generate, args.batch_size)
    ru["seconds"] = round(time.perf_counter() - t1, 1)
    result = {"benchmark": "generation", "weights": weights, "threads": args.threads, "throughput": tp, "reuse": ru}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
