"""The toy-world training recipe: everything from random init, seeded.

    python -m erasekit.toyworld.train --out DIR [--seed 0] [--quick] [--stages ...]

Stages (in order; a later stage loads what earlier ones wrote under DIR):
  tokenizer     BPE merges over the word list -> DIR/pipeline/tokenizer, DIR/clip
  clip          mini-CLIP (transformers CLIPModel) trained contrastively on the
                captions; its text tower, frozen, is the pipeline's text encoder
  clip_vision   the image tower keeps training against the frozen text tower
  vae           AutoencoderKL 32x32x3 <-> 4x8x8, scaling_factor set from latent std
  judge         shape(+none)/colour CNN; "none" = blank, noise, blob, partial,
                tiny and morph (halfway blends of two shapes) renders
  unet          UNet2DConditionModel (epsilon, min-SNR-5, EMA, cfg dropout) on
                precomputed latents and caption embeddings; the final EMA is kept
                (a judge-scored quick eval is logged every --eval-every steps)
  unet_balance  warm-restart rounds with colour-only / "a shape" / "" captions
                over-weighted, so neutral captions draw every shape
The output layout is DIR/pipeline (diffusers), DIR/clip, DIR/judge.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .judge import SHAPE_CLASSES, ToyJudge
from .models import SCHEDULER_CONFIG, clip_model, unet_model, vae_model
from .render import COLOURS, all_captions, render_batch, sample_caption
from .tokenizer import build_tokenizer_files, load_tokenizer
from .training_data import (
    CLIP_MEAN,
    CLIP_STD,
    augment,
    balance_caption,
    contrastive_data,
    judge_data,
    to_unit,
    tokenize,
    unet_training_data,
)
from .training_eval import build_pipeline, clip_zero_shot, eval_generation, features, save_pipeline

STAGES = ("tokenizer", "clip", "clip_vision", "vae", "judge", "unet", "unet_balance")
# The shipped weights: every stage (UNet to step 5000, then one 5000-step unet_balance round).
DEFAULT_STAGES = STAGES


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _warmup_cosine(opt, steps: int, warm: int, floor: float = 0.0):
    """Linear warm-up over ``warm`` steps, then a cosine from 1 down to ``floor`` at ``steps``."""
    if not floor:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))


def _optimise(opt, sched, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``, then one scheduler step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


# --------------------------------------------------------------------------- tokenizer
def stage_tokenizer(out: Path, args) -> None:
    t0 = time.time()
    build_tokenizer_files(out / "pipeline" / "tokenizer")
    build_tokenizer_files(out / "clip")
    tok = load_tokenizer(out / "pipeline" / "tokenizer")
    for cap in all_captions(include_empty=False):
        ids = tok(cap).input_ids
        assert len(ids) == len(cap.split()) + 2, (cap, ids)  # every toy word is one token
    log(f"tokenizer: vocab {len(tok)} tokens, model_max_length {tok.model_max_length} ({time.time() - t0:.1f}s)")



# --------------------------------------------------------------------------- clip
def _train_contrastive(stage: str, model, tok, args, t0: float, text_features, data, params, lr: float,
                       n_img: int, steps: int, bs: int, seed: int, max_noise: float | None = None) -> dict:
    """The mini-CLIP's contrastive loop (both phases), then its zero-shot accuracy on
    held-out renders. ``text_features()``: this phase's caption features; ``max_noise``:
    augment the images like the judge's (None: no augmentation)."""
    pix, _captions, groups, targets = data
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = _warmup_cosine(opt, steps, warm=50)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        b = torch.randint(0, n_img, (bs,), generator=g)
        x = pix[b] if max_noise is None else augment(pix[b], g, max_noise)
        ie = F.normalize(features(model.get_image_features(pixel_values=x)), dim=-1)
        te = F.normalize(text_features(), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * ie @ te.T
        loss = sum(F.cross_entropy(logits[:, gi], tg[b]) for (gi, _), tg in zip(groups, targets, strict=True)) / len(groups)
        _optimise(opt, sched, loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"{stage} step {step}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} ({time.time() - t0:.0f}s)")
    ev = render_batch(64 if args.quick else 1000, seed=args.seed * 1000 + 99)
    acc = clip_zero_shot(model, tok, ev[0], ev[1], ev[2])
    log(f"{stage} zero-shot on held-out renders: {acc} ({time.time() - t0:.0f}s)")
    return acc


def stage_clip(out: Path, args) -> None:
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTextModel

    seed_all(args.seed + 1)
    t0 = time.time()
    tok = load_tokenizer(out / "clip")
    model = clip_model(len(tok), tok.bos_token_id, tok.eos_token_id)
    model.train()
    n_img, steps, bs = (512, 3, 32) if args.quick else (20000, 600, 64)
    data = contrastive_data(n_img, args.seed * 1000 + 11)
    # The text tower is causal and pools at the end-of-text token, so the pooled
    # output only depends on the first few positions: train on those (8 positions,
    # enough for every caption) -- identical result, a tenth of the cost.
    ids = tokenize(tok, data[1])[:, :8]
    acc = _train_contrastive("clip", model, tok, args, t0, lambda: features(model.get_text_features(input_ids=ids)),
                             data, model.parameters(), 5e-4, n_img, steps, bs, args.seed + 2)
    model.eval()
    cdir = out / "clip"
    model.save_pretrained(cdir, safe_serialization=True)
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)
        ),
        tokenizer=tok,
    )
    proc.save_pretrained(cdir)
    te = CLIPTextModel(model.config.text_config)
    te.load_state_dict(model.text_model.state_dict())
    te.eval().save_pretrained(out / "pipeline" / "text_encoder", safe_serialization=True)
    _write_metrics(out, "clip", {**acc, "seconds": round(time.time() - t0, 1)})



def stage_clip_vision(out: Path, args) -> None:
    """Phase 2 of the mini-CLIP: the text tower is frozen (it is the pipeline's text
    encoder); the image tower, both projections and the logit scale keep training, on
    images with the judge's augmentation (generated images are decoded latents, softer
    and noisier than renders; without it the tower called blurry crosses and squares "circle")."""
    from transformers import CLIPModel

    seed_all(args.seed + 9)
    t0 = time.time()
    tok = load_tokenizer(out / "clip")
    model = CLIPModel.from_pretrained(out / "clip", local_files_only=True)
    model.train()
    model.text_model.requires_grad_(False)
    model.text_model.eval()
    n_img, steps, bs = (256, 3, 16) if args.quick else (20000, 800, 64)
    data = contrastive_data(n_img, args.seed * 1000 + 12)
    with torch.no_grad():
        pooled = model.text_model(input_ids=tokenize(tok, data[1])).pooler_output  # frozen
    params = [p for n, p in model.named_parameters() if not n.startswith("text_model.")]
    acc = _train_contrastive("clip_vision", model, tok, args, t0, lambda: model.text_projection(pooled),
                             data, params, 1e-3, n_img, steps, bs, args.seed + 10, max_noise=0.15)
    model.eval().save_pretrained(out / "clip", safe_serialization=True)
    _write_metrics(out, "clip_vision", {**acc, "seconds": round(time.time() - t0, 1)})


# --------------------------------------------------------------------------- vae
def stage_vae(out: Path, args) -> None:
    seed_all(args.seed + 3)
    t0 = time.time()
    vae = vae_model().train()
    n_img, steps, bs = (256, 3, 16) if args.quick else (20000, 1000, 32)
    x_all = to_unit(render_batch(n_img, seed=args.seed * 1000 + 21)[0])
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = _warmup_cosine(opt, steps, warm=100, floor=0.05)
    g = torch.Generator().manual_seed(args.seed + 4)
    for step in range(steps):
        x = x_all[torch.randint(0, n_img, (bs,), generator=g)]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (3 * 32 * 32)
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-4 * kl
        _optimise(opt, sched, loss)
        if step % 100 == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / F.mse_loss(rec.clamp(-1, 1), x).item())
            log(f"vae step {step}/{steps} loss {loss.item():.4f} psnr {psnr:.1f}dB kl {kl.item():.3f} ({time.time() - t0:.0f}s)")
    vae.eval()
    with torch.no_grad():
        xe = to_unit(render_batch(64 if args.quick else 1000, seed=args.seed * 1000 + 98)[0])
        mu = vae.encode(xe).latent_dist.mean
        std = mu.std().item()
        rec = vae.decode(mu).sample.clamp(-1, 1)
        psnr = 10 * math.log10(4.0 / F.mse_loss(rec, xe).item())
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    vae.save_pretrained(out / "pipeline" / "vae", safe_serialization=True)
    log(f"vae held-out psnr {psnr:.2f}dB, latent std {std:.4f} -> scaling_factor {1.0 / std:.4f} ({time.time() - t0:.0f}s)")
    _write_metrics(out, "vae", {"psnr_db": round(psnr, 2), "scaling_factor": round(1.0 / std, 5), "seconds": round(time.time() - t0, 1)})




def stage_judge(out: Path, args) -> None:
    seed_all(args.seed + 5)
    t0 = time.time()
    n_pos, n_neg, steps, bs = (256, 64, 3, 32) if args.quick else (16000, 6000, 600, 64)
    x_np, ys, yc = judge_data(n_pos, n_neg, args.seed * 1000 + 31)
    x_all = to_unit(x_np)
    judge = ToyJudge().train()
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = _warmup_cosine(opt, steps, warm=50)
    g = torch.Generator().manual_seed(args.seed + 6)
    n = len(x_all)
    for step in range(steps):
        b = torch.randint(0, n, (bs,), generator=g)
        x = augment(x_all[b], g, 0.08)
        ls, lc = judge(x)
        loss = F.cross_entropy(ls, ys[b]) + F.cross_entropy(lc, yc[b], ignore_index=-100)
        _optimise(opt, sched, loss)
        if step % 200 == 0 or step == steps - 1:
            log(f"judge step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    judge.eval()
    xe, yse, yce = judge_data(64 if args.quick else 2000, 16 if args.quick else 500, args.seed * 1000 + 97)
    preds = judge.predict(xe)
    ps = np.array([SHAPE_CLASSES.index(p.shape) for p in preds])
    pc = np.array([COLOURS.index(p.colour) for p in preds])
    pos = yce.numpy() >= 0
    acc = {
        "shape": float((ps[pos] == yse.numpy()[pos]).mean()),
        "colour": float((pc[pos] == yce.numpy()[pos]).mean()),
        "none": float((ps[~pos] == yse.numpy()[~pos]).mean()),
    }
    judge.save(out / "judge")
    log(f"judge held-out accuracy {acc} ({time.time() - t0:.0f}s)")
    _write_metrics(out, "judge", {**acc, "seconds": round(time.time() - t0, 1)})



# --------------------------------------------------------------------------- unet
def _noise_schedule():
    """The training noise schedule (the pipeline's DDIM betas) and min-SNR-5 loss weights
    per timestep (epsilon prediction)."""
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    ac = noise_sched.alphas_cumprod
    snr = ac / (1 - ac)
    return noise_sched, torch.clamp(snr, max=5.0) / snr


def _denoise_step(unet, ema, opt, sched, noise_sched, weight, z0, emb, g, ema_decay: float) -> torch.Tensor:
    """One UNet training step (epsilon loss, min-SNR ``weight`` per timestep, grad-clip 1)
    and the EMA update; the one definition both UNet stages use."""
    noise = torch.randn(z0.shape, generator=g)
    t = torch.randint(0, 1000, (z0.shape[0],), generator=g)
    pred = unet(noise_sched.add_noise(z0, noise, t), t, emb).sample
    loss = ((pred - noise) ** 2).mean(dim=(1, 2, 3)).mul(weight[t]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
            pe.lerp_(p, 1 - ema_decay)
    return loss


def stage_unet(out: Path, args) -> None:
    from copy import deepcopy

    seed_all(args.seed + 7)
    t0 = time.time()
    n_img = 256 if args.quick else args.unet_images
    cap_idx, cap_emb, lat, shapes, colours = unet_training_data(out, n_img, args.seed * 1000 + 41)
    log(f"unet: {n_img} latents {tuple(lat.shape[1:])} std {lat.std().item():.3f}, {len(cap_idx)} caption embeddings ({time.time() - t0:.0f}s)")
    rng = np.random.default_rng([args.seed, 42])
    unet = unet_model(tuple(args.unet_width)).train()
    ema = deepcopy(unet).eval().requires_grad_(False)
    log(f"unet params {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M")
    noise_sched, weight = _noise_schedule()
    steps = 3 if args.quick else args.unet_steps
    bs = 8 if args.quick else args.unet_batch
    opt = torch.optim.AdamW(unet.parameters(), lr=args.unet_lr, weight_decay=0.01)
    warm = 200
    sched = _warmup_cosine(opt, steps, warm, floor=0.1)
    g = torch.Generator().manual_seed(args.seed + 8)
    judge = None
    best, best_score, hist = None, -1.0, []
    eval_every = args.eval_every
    for step in range(steps):
        b = torch.randint(0, n_img, (bs,), generator=g)
        ci = torch.tensor([cap_idx[sample_caption(shapes[i], colours[i], rng, p_empty=0.12)] for i in b.tolist()])
        loss = _denoise_step(unet, ema, opt, sched, noise_sched, weight, lat[b], cap_emb[ci], g, min(args.ema, (1 + step) / (10 + step)))
        if step % 50 == 0:
            el = time.time() - t0
            log(f"unet step {step}/{steps} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} ({el:.0f}s, {el / (step + 1):.2f}s/step)")
        last = step == steps - 1 or step + 1 == args.unet_stop_step
        capped = False
        if args.unet_max_minutes and time.time() - t0 > 60 * args.unet_max_minutes and not last:
            log(f"unet: time budget of {args.unet_max_minutes} min reached at step {step + 1}; stopping early")
            last = capped = True
        if judge is None and (out / "judge" / "config.json").exists():  # written last
            from .judge import load_judge

            judge = load_judge(path=out / "judge")  # the judge may be trained alongside
        if judge is not None and not args.quick and ((step + 1) % eval_every == 0 or last):
            pipe = build_pipeline(out, ema)
            res = eval_generation(pipe, judge, n_per_prompt=4 if last else 2, neutral=last or (step + 1) % (eval_every * 3) == 0)
            score = res["shape"] + res["colour"]
            hist.append({"step": step + 1, **res})
            log(f"unet EVAL step {step + 1}: {res}")
            if score >= best_score:
                best_score, best = score, deepcopy(ema.state_dict())
                save_pipeline(out, ema)
                log(f"unet: saved best EMA checkpoint (step {step + 1}, shape+colour {score:.3f})")
        if last:
            break
    if capped and best is not None:
        ema.load_state_dict(best)  # safety stop: keep the best evaluated EMA checkpoint
        save_pipeline(out, ema)
    else:
        save_pipeline(out, ema)  # the recipe ships the final EMA
    _write_metrics(out, "unet", {"history": hist, "seconds": round(time.time() - t0, 1), "steps": steps, "batch": bs})
    log(f"unet done ({time.time() - t0:.0f}s)")


def stage_unet_balance(out: Path, args) -> None:
    """Annealing phase of the UNet with the neutral captions over-weighted, in
    ``--balance-rounds`` rounds (warm restarts: round r re-seeds from ``seed + r``, so
    it also draws fresh images, and restarts the learning rate and the EMA).

    Why: after the main schedule every "a {colour} {shape}" prompt draws the right shape,
    but a colour-only caption ("a green shape") is a quarter of the colour-only share of
    the data, and its shape is left to the noise. The model's map from noise to shape
    for those captions stayed lopsided (one colour drew circles 44-50% of the time, and
    classifier-free guidance amplifies it). Fine-tuning on a mix where colour-only, "a
    shape" and "" are common (``--balance-mix``: standard / colour-only / "a shape" /
    "") levels it, while the standard captions keep the named shapes exact."""
    t0 = time.time()
    rounds = 1 if args.quick else args.balance_rounds
    for r in range(rounds):
        log(f"unet_balance round {r + 1}/{rounds}")
        _balance_round(out, args, args.seed + r)
    _write_metrics(out, "unet_balance", {"rounds": rounds, "steps_per_round": 3 if args.quick else args.balance_steps,
                                         "mix": args.balance_mix, "lr": args.balance_lr, "seconds": round(time.time() - t0, 1)})


def _balance_round(out: Path, args, seed: int) -> None:
    from copy import deepcopy

    from diffusers import UNet2DConditionModel

    seed_all(seed + 11)
    t0 = time.time()
    n_img = 256 if args.quick else args.balance_images
    cap_idx, cap_emb, lat, shapes, colours = unet_training_data(out, n_img, seed * 1000 + 43)
    unet = UNet2DConditionModel.from_pretrained(out / "pipeline" / "unet", local_files_only=True).train()
    ema = deepcopy(unet).eval().requires_grad_(False)
    noise_sched, weight = _noise_schedule()
    steps = 3 if args.quick else args.balance_steps
    bs = 8 if args.quick else args.unet_batch
    opt = torch.optim.AdamW(unet.parameters(), lr=args.balance_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps))
    g = torch.Generator().manual_seed(seed + 12)
    rng = np.random.default_rng([seed, 43])
    mix = np.cumsum([float(x) for x in args.balance_mix.split(",")])
    if len(mix) != 4 or mix[-1] <= 0:
        raise SystemExit("--balance-mix needs four non-negative weights: standard,colour-only,a shape,empty")
    for step in range(steps):
        b = torch.randint(0, n_img, (bs,), generator=g)
        ci = torch.tensor([cap_idx[balance_caption(shapes[i], colours[i], rng, mix)] for i in b.tolist()])
        loss = _denoise_step(unet, ema, opt, sched, noise_sched, weight, lat[b], cap_emb[ci], g, args.ema)
        if step % 100 == 0 or step == steps - 1:
            el = time.time() - t0
            log(f"unet_balance step {step}/{steps} loss {loss.item():.4f} ({el:.0f}s, {el / (step + 1):.2f}s/step)")
    save_pipeline(out, ema)


# --------------------------------------------------------------------------- main
def _write_metrics(out: Path, stage: str, data: dict) -> None:
    p = out / "train_metrics.json"
    cur = json.loads(p.read_text()) if p.exists() else {}
    cur[stage] = data
    p.write_text(json.dumps(cur, indent=2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m erasekit.toyworld.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few steps on a handful of images (smoke test)")
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES), help=f"comma list of {STAGES} (default: all)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ERASEKIT_TOY_THREADS", "1")))
    ap.add_argument("--unet-steps", type=int, default=5000)
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--unet-images", type=int, default=40000)
    ap.add_argument("--unet-width", type=int, nargs=3, default=[32, 64, 64])
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--balance-steps", type=int, default=5000, help="steps per unet_balance round")
    ap.add_argument("--balance-rounds", type=int, default=1)
    ap.add_argument("--balance-lr", type=float, default=2e-4)
    ap.add_argument("--balance-images", type=int, default=40000)
    ap.add_argument("--balance-mix", default="0.40,0.40,0.10,0.10", help="caption mix: standard,colour-only,'a shape',''")
    ap.add_argument("--unet-stop-step", type=int, default=5000, help="stop here (the cosine schedule still spans --unet-steps)")
    ap.add_argument("--unet-max-minutes", type=float, default=0.0, help="safety stop (0 = none); the best EMA checkpoint is kept")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for s in stages:
        if s not in STAGES:
            ap.error(f"unknown stage {s!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    for s in STAGES:
        if s in stages:
            ts = time.time()
            log(f"=== stage {s} ===")
            globals()[f"stage_{s}"](args.out, args)
            log(f"=== stage {s} done in {time.time() - ts:.0f}s ===")
    log(f"all stages done in {time.time() - t_all:.0f}s")


if __name__ == "__main__":
    main()
