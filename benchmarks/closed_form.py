"""The closed-form family (mace, uce, rece, speed) on SD-v1.4-shaped random models. Prints ONE JSON line.

    python benchmarks/closed_form.py [--concepts 1,10,100] [--threads N]

Models: ``erasekit.models.sd_shapes`` (SD v1.4's exact UNet config: 32 K/V
projections; ViT-L/14's text config; the real CLIP BPE tokenizer from
open_clip_torch's vocabulary, else the toy tokenizer). For each number of
concepts (erased jointly) and each technique at its defaults (MACE with one
template per concept and the built-in caption prior; SPEED's retain set is its
default caption prior):

* ``text_s`` / ``edit_s``: our text encoding and our edit, as the technique
  reports them (``seconds_text_encoding`` / ``seconds_edit`` or ``seconds_solve``);
* ``official_s``: the official per-layer formulation on the same encodings — for
  every projection, its own two Grams and solve, float64
  (``closed_form.reference_refine``); RECE's rounds recompute the adversarial
  embedding from all 32 per-layer weights each round. SPEED is per layer in
  its official form *and* in ours (its retain set depends on each W), so it has
  no separate official timing;
* ``ratio``: edit_s / official_s (< 1: ours is faster), ``max_rel_diff``:
  max |ours − official| / max |official| over the edited matrices;
* ``peak_mb``: peak extra resident memory of our whole apply() (text + edit).
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
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from mace_cfr import CONCEPTS, PeakRSS, clip_tokenizer  # noqa: E402


def _stack(blocks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs = torch.cat([b.x for b in blocks])
    ys = torch.cat([b.x if b.y is None else b.y for b in blocks])
    ws = torch.cat([torch.full((b.x.shape[0],), float(b.weight), dtype=torch.float64) for b in blocks])
    return xs, ys, ws


def official(name: str, cfg, base: list[torch.Tensor], pipe) -> tuple[list[torch.Tensor] | None, float | None]:
    """The per-layer formulation of the official code for ``name`` on freshly computed (identical) encodings."""
    from erasekit.techniques import mace_cfr, rece, uce_rules
    from erasekit.techniques.closed_form import encode_texts, reference_refine

    if name == "speed":
        return None, None
    if name == "mace":
        from erasekit.techniques.mace import resolve_prior

        plan = mace_cfr.build_plan(cfg, resolve_prior(cfg)[0])
        blocks = mace_cfr.config_rows(mace_cfr.encode_plan(pipe, plan), cfg)
        t0 = time.perf_counter()
        out = reference_refine(base, *_stack(blocks), cfg.lambda_cfr)
        return out, time.perf_counter() - t0
    plan = uce_rules.uce_plan(cfg)
    concepts = [c.strip() for c in uce_rules.as_list(cfg.erase_concept)]
    guides = uce_rules.guides_for(cfg)
    extra = [*concepts, *guides, *rece.retain_texts(cfg)] if name == "rece" else []
    enc = encode_texts(pipe, [*plan.prompts(), *extra])
    blocks = uce_rules.uce_rows(enc, plan, cfg.token_rule, cfg.erase_scale, uce_rules.resolved_preserve_scale(cfg))
    t0 = time.perf_counter()
    w = reference_refine(base, *_stack(blocks), cfg.lamb)
    if name == "rece":
        w0 = [b.double() for b in base]
        c = torch.cat([enc.rows(k) for k in concepts]).double()
        g = torch.cat([enc.rows(k) for k in guides]).double()
        kept = torch.cat([enc.rows(k) for k in rece.retain_texts(cfg)]).double()
        eye = torch.eye(c.shape[1], dtype=torch.float64)
        for _ in range(cfg.rounds):
            a = sum(x.T @ x for x in w) + cfg.regular_scale * eye
            b = sum(x.T @ y for x, y in zip(w, w0, strict=True))
            c_star = c @ torch.linalg.solve(a, b).T
            x = torch.cat([c_star, kept])
            y = torch.cat([g, kept])
            wt = torch.cat([torch.full((c_star.shape[0],), cfg.erase_scale, dtype=torch.float64),
                            torch.full((kept.shape[0],), cfg.round_preserve_scale, dtype=torch.float64)])
            w = reference_refine(w, x, y, wt, cfg.round_lamb)
    return w, time.perf_counter() - t0


def run_one(name: str, n: int, pipe, layers, base) -> dict:
    from erasekit.registry import TECHNIQUES, load_builtins
    from erasekit.techniques.mace_config import DEFAULT_TEMPLATES

    load_builtins()
    with torch.no_grad():
        for (_, lin), w in zip(layers, base, strict=True):
            lin.weight.copy_(w)
    kw = {"templates": list(DEFAULT_TEMPLATES[:1])} if name == "mace" else {}
    cls = TECHNIQUES.get(name)
    cfg = cls.Config(erase_concept=list(CONCEPTS[:n]), device="cpu", use_fp16=False, **kw)
    with PeakRSS() as mem:
        d = cls(cfg).apply(pipe)
    edit_s = d.get("seconds_edit", d.get("seconds_solve"))
    edited = {n_: lin.weight.detach().double() for n_, lin in layers}
    ref, ref_s = official(name, cfg, base, pipe)
    row = {"technique": name, "concepts": n, "text_s": round(d["seconds_text_encoding"], 3), "edit_s": round(edit_s, 4),
           "layers": d["layers_edited"], "peak_mb": mem.extra_mb, "official_s": None, "ratio": None, "max_rel_diff": None}
    if ref is not None:
        diffs = [float((edited[n_] - r).abs().max() / r.abs().max()) for (n_, _), r in zip(layers, ref, strict=True)]
        row.update(official_s=round(ref_s, 4), ratio=round(edit_s / ref_s, 4), max_rel_diff=max(diffs))
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="1,10,100", help="comma list of concept counts")
    ap.add_argument("--techniques", default="mace,uce,rece,speed")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from erasekit.models.sd_shapes import sd14_text_encoder, sd14_unet
    from erasekit.techniques.closed_form import cross_attention_kv

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tok, tok_name = clip_tokenizer(Path(tmp))
    unet, text = sd14_unet(0), sd14_text_encoder(0)
    layers = cross_attention_kv(unet)
    base = [lin.weight.detach().clone() for _, lin in layers]
    pipe = SimpleNamespace(unet=unet, text_encoder=text, tokenizer=tok)
    rows = [run_one(t, int(n), pipe, layers, base) for n in args.concepts.split(",") for t in args.techniques.split(",")]
    diffs = [r["max_rel_diff"] for r in rows if r["max_rel_diff"] is not None]
    print(json.dumps({
        "benchmark": "closed_form",
        "models": "random SD-v1.4 UNet (32 K/V) + ViT-L/14 text encoder",
        "tokenizer": tok_name,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "results": rows,
        "max_rel_diff_all": max(diffs) if diffs else None,
        "bars": {"max_rel_diff<=1e-4": all(d <= 1e-4 for d in diffs)},
        "total_s": round(time.perf_counter() - t_all, 1),
    }))


if __name__ == "__main__":
    main()
