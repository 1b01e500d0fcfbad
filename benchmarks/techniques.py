"""Seconds to apply each technique on the toy world, side by side, and ESD's cost per iteration on
the SD-v1.4 shape: the spec's "seconds rather than minutes" claim for MACE, measured.

    PYTHONPATH=src python benchmarks/techniques.py [--esd-iterations N] [--threads T] [--no-sd]

Prints ONE JSON line:

* ``toy_seconds``: wall seconds of ``Technique.apply`` on the shipped toy pipeline for mace,
  negative_prompt, sld (installing a sampling hook: ~0) and esd (``--esd-iterations``
  iterations of the toy recipe), plus ``toy_esd_seconds_per_iteration``;
* ``toy_sampling_cost_ratio``: seconds to draw 32 toy images with SLD (three UNet batches per
  step) and with the negative prompt, over the unedited model's seconds — where an
  inference-time technique pays instead;
* ``sd14``: on a random SD-v1.4-shaped UNet (exact config, 64×64 latents) and ViT-L/14 text
  encoder, the seconds of one UNet forward at batch 2 (a guided part-way sampling step) and of
  the ESD loss with its backward pass (ESD-x), and from those the projected seconds of one
  official iteration (on average ``ddim_steps / 2`` sampling steps + the loss) and of the
  official 1000 iterations; next to MACE's measured edit seconds on the same shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def _toy(esd_iterations: int) -> dict:
    from erasekit.generation.sampling import install, sample
    from erasekit.registry import TECHNIQUES, load_builtins
    from erasekit.toyworld import TOY_DEFAULTS, load_pipeline

    load_builtins()
    pipe = load_pipeline()
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    out: dict = {}
    configs = {
        "mace": {"erase_concept": "circle"},
        "negative_prompt": {"erase_concept": "circle"},
        "sld": {"erase_concept": "circle", "sld_config": "strong"},
        # the toy recipe (examples/family/esd_x.yaml), cut to esd_iterations
        "esd": {"erase_concept": "circle", "iterations": esd_iterations, "lr": 1e-3, "ddim_steps": 20, "negative_guidance": 16.0,
                "erase_in": ["circle", "a circle"] + [f"a {c} circle" for c in ("red", "green", "blue", "yellow")]},
    }
    draw = {}
    for name, cfg in configs.items():
        pipe.unet.load_state_dict(base)
        install(pipe, None)
        cls = TECHNIQUES.get(name)
        t0 = time.perf_counter()
        cls(cls.Config(model_id="toy", device="cpu", use_fp16=False, **cfg)).apply(pipe)
        out[name] = round(time.perf_counter() - t0, 4)
        if name in ("negative_prompt", "sld"):
            draw[name] = _draw(pipe, sample, TOY_DEFAULTS)
    pipe.unet.load_state_dict(base)
    install(pipe, None)
    plain = _draw(pipe, sample, TOY_DEFAULTS)
    return {"toy_seconds": out, "toy_esd_seconds_per_iteration": round(out["esd"] / esd_iterations, 4),
            "toy_sampling_cost_ratio": {k: round(v / plain, 3) for k, v in draw.items()}}


def _draw(pipe, sample, d) -> float:
    gens = [torch.Generator().manual_seed(i) for i in range(32)]
    t0 = time.perf_counter()
    with torch.no_grad():
        sample(pipe, ["a red circle"] * 32, [""] * 32, steps=d["num_inference_steps"], guidance=d["guidance_scale"],
               height=d["height"], width=d["width"], generators=gens, output_type="np")
    return time.perf_counter() - t0


def _sd14() -> dict:
    import copy

    from erasekit.models.sd_shapes import sd14_text_encoder, sd14_unet
    from erasekit.techniques.closed_form import Grams, apply_refinement, cross_attention_kv, refinement_matrix
    from erasekit.techniques.esd import esd_loss, trainable_parameters

    unet, text = sd14_unet(0), sd14_text_encoder(1)
    z = torch.randn(1, 4, 64, 64)
    emb = torch.randn(1, 77, 768)
    t = torch.tensor([500])
    with torch.no_grad():
        unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([emb, emb]))  # warm-up
        t0 = time.perf_counter()
        unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([emb, emb]))
        fwd2 = time.perf_counter() - t0
    trained = copy.deepcopy(unet)
    for p in trained.parameters():
        p.requires_grad_(False)
    params = [p for _, p in trainable_parameters(trained, "xattn")]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=1e-5)
    t0 = time.perf_counter()
    loss = esd_loss(trained, unet, z, t, emb, emb, 1.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss_s = time.perf_counter() - t0
    per_iter = 25 * fwd2 + loss_s  # 50 DDIM steps: on average 25 guided sampling steps before the loss
    # MACE's edit on the same UNet: the Grams of 1,000 text rows and the 32 products (the text
    # encoder's cost, ~0.3 s per prompt here, is in benchmarks/mace_cfr.py)
    rows = torch.randn(1000, 768, dtype=torch.float64)
    t0 = time.perf_counter()
    g = Grams(768)
    g.add(rows, rows * 0.9, 1.0)
    apply_refinement([lin for _, lin in cross_attention_kv(unet)], refinement_matrix(g, 0.1))
    mace_s = time.perf_counter() - t0
    del text
    return {"unet_forward_batch2_seconds": round(fwd2, 3), "esd_loss_backward_seconds": round(loss_s, 3),
            "esd_projected_seconds_per_iteration": round(per_iter, 2),
            "esd_projected_seconds_1000_iterations": round(1000 * per_iter, 1),
            "mace_solve_and_apply_seconds": round(mace_s, 3),
            "esd_1000_over_mace": round(1000 * per_iter / mace_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--esd-iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-sd", action="store_true", help="skip the SD-v1.4-shaped measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, **_toy(args.esd_iterations)}
    if not args.no_sd:
        out["sd14"] = _sd14()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
