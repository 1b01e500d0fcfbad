"""MACE CFR speed and exactness on randomly initialised SD-v1.4-shaped models. Prints ONE JSON line.

    python benchmarks/mace_cfr.py [--concepts 1,10,100] [--templates 1] [--threads N]

Models are built in code (no download): UNet2DConditionModel with SD v1.4's
config (block_out_channels 320/640/1280/1280, cross_attention_dim 768,
attention_head_dim 8, layers_per_block 2, sample_size 64: 16 cross-attention
blocks, 32 K/V projections) and CLIPTextModel with the ViT-L/14 text config
(hidden 768, 12 layers, 12 heads, MLP 3072, vocab 49408, 77 positions). The
tokenizer is the real CLIP BPE vocabulary shipped inside the ``open_clip_torch``
package (``pip install -e ".[bench]"``; only its vocabulary file is read),
else the toy world's tokenizer. Random weights do not change the cost of
anything measured here.

For each number of concepts (erased jointly as one synonym list, MACE's
default options, ``--templates`` of the default templates per concept and the
built-in caption prior) the text is encoded once and both implementations run
on the same encodings:

* ours: gather aligned rows → one float64 Gram accumulation → one Cholesky
  solve → W·R for the 32 projections (``erasekit.techniques.mace``);
* reference: the per-layer formulation of the official MACE code — for every
  layer project the targets through that layer, accumulate that layer's two
  Grams, solve (``erasekit.techniques.closed_form.reference_refine``; float64 too, so
  the weight difference measures the algebra, not the precision).

Reported per N: seconds of text encoding / our edit / the reference edit, the
speed-up, the text encoder's share of our total, the maximum relative weight
difference (max |ours − ref| / max |ref| over all 32 matrices), and the peak
extra resident memory of each edit over the process's resident set before it.
Bars (issue): speed-up ≥ 5× at 100 concepts, text share ≥ 0.8, difference ≤ 1e-4.
The default ``--templates 1`` keeps the whole run near 5 minutes on a 2-core CPU
(text encoding of ViT-L runs at about 2-4 prompts/s there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# 100 distinct everyday concepts (COCO-like objects, animals, places, styles).
CONCEPTS = (
    "dog cat horse sheep cow elephant bear zebra giraffe bird airplane bicycle car motorcycle bus train truck boat "
    "bench umbrella backpack handbag suitcase frisbee kite skateboard surfboard bottle cup fork knife spoon bowl "
    "banana apple sandwich orange broccoli carrot pizza donut cake chair couch bed table toilet television laptop "
    "keyboard microwave oven toaster sink refrigerator book clock vase scissors teddy toothbrush castle bridge tower "
    "church lighthouse mountain river forest desert beach island volcano waterfall garden fountain tractor rocket "
    "helmet guitar piano violin drum trumpet camera lamp mirror candle ladder anchor tent canoe balloon parachute "
    "dragon robot wizard pirate knight samurai"
).split()


def clip_tokenizer(tmp: Path):
    """The real CLIP BPE tokenizer (open_clip's vocabulary file, never imports open_clip), else the toy one."""
    from transformers import CLIPTokenizer

    from erasekit.models.sd_shapes import open_clip_bpe, sd_clip_tokenizer

    if open_clip_bpe() is None:
        from erasekit.toyworld.tokenizer import build_tokenizer_files

        return CLIPTokenizer.from_pretrained(str(build_tokenizer_files(tmp / "tok"))), "toy (open_clip_torch not installed)"
    return sd_clip_tokenizer(tmp / "clip_tok"), "CLIP ViT-L/14 BPE (open_clip_torch vocabulary)"


def sd14_models(seed: int = 0):
    from erasekit.models.sd_shapes import sd14_text_encoder, sd14_unet

    return sd14_unet(seed), sd14_text_encoder(seed)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms (torch CPU allocations included)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra_mb(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def run(n_concepts: int, n_templates: int, unet, text, tok) -> dict:
    from erasekit.techniques.closed_form import apply_refinement, cross_attention_kv, reference_refine
    from erasekit.techniques.mace import (
        DEFAULT_TEMPLATES,
        MACEConfig,
        build_plan,
        config_rows,
        encode_plan,
        resolve_prior,
        solve_cfr,
    )

    cfg = MACEConfig(erase_concept=list(CONCEPTS[:n_concepts]), templates=list(DEFAULT_TEMPLATES[:n_templates]), device="cpu")
    layers = cross_attention_kv(unet)
    base = [lin.weight.detach().clone() for _, lin in layers]
    plan = build_plan(cfg, resolve_prior(cfg)[0])
    enc = encode_plan(SimpleNamespace(text_encoder=text, tokenizer=tok), plan)  # shared by both implementations

    with PeakRSS() as mem_ours:
        t0 = time.perf_counter()
        blocks = config_rows(enc, cfg)
        r, grams = solve_cfr(blocks, cfg.lambda_cfr)
        apply_refinement([lin for _, lin in layers], r)
        t_ours = time.perf_counter() - t0
    ours = [lin.weight.detach().clone() for _, lin in layers]

    with PeakRSS() as mem_ref:
        t0 = time.perf_counter()
        blocks = config_rows(enc, cfg)
        x = torch.cat([b.x for b in blocks])
        y = torch.cat([b.x if b.y is None else b.y for b in blocks])
        w = torch.cat([torch.full((b.x.shape[0],), b.weight, dtype=torch.float64) for b in blocks])
        ref = reference_refine(base, x, y, w, cfg.lambda_cfr)
        t_ref = time.perf_counter() - t0
    diff = max(float((o.double() - rf).abs().max() / rf.abs().max()) for o, rf in zip(ours, ref, strict=True))

    with torch.no_grad():  # restore the base weights for the next N
        for (_, lin), w0 in zip(layers, base, strict=True):
            lin.weight.copy_(w0)
    return {
        "concepts": n_concepts,
        "prompts_encoded": len(enc.index),
        "rows": grams.n_pairs,
        "layers": len(layers),
        "text_s": round(enc.seconds, 3),
        "ours_edit_s": round(t_ours, 3),
        "ref_edit_s": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 1),
        "text_share": round(enc.seconds / (enc.seconds + t_ours), 3),
        "max_rel_weight_diff": float(f"{diff:.3g}"),
        "ours_peak_extra_mb": mem_ours.extra_mb,
        "ref_peak_extra_mb": mem_ref.extra_mb,
    }


def main(argv: list[str] | None = None) -> None:
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and argv is None:
        # glibc: serve every allocation over 1 MiB by mmap and return it on free, so the
        # resident-set sampling below sees each edit's own peak instead of recycled heap.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="1,10,100", help="comma list of concept counts")
    ap.add_argument("--templates", type=int, default=1, help="how many of the default templates per concept")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tok, tok_name = clip_tokenizer(Path(tmp))
    t_build = time.perf_counter()
    unet, text = sd14_models()
    build_s = time.perf_counter() - t_build
    results = [run(int(n), args.templates, unet, text, tok) for n in args.concepts.split(",")]
    last = results[-1]
    out = {
        "benchmark": "mace_cfr",
        "models": "random SD-v1.4 UNet (859.5M) + ViT-L/14 text encoder",
        "tokenizer": tok_name,
        "templates_per_concept": args.templates,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "results": results,
        "bars": {
            f"speedup_at_{last['concepts']}>=5": last["speedup"] >= 5,
            "text_share>=0.8": all(r["text_share"] >= 0.8 for r in results),
            "max_rel_weight_diff<=1e-4": all(r["max_rel_weight_diff"] <= 1e-4 for r in results),
        },
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model_build_s": round(build_s, 1),
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
