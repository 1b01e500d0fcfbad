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
from .render import COLOURS, NEGATIVE_KINDS, SHAPES, SYNONYMS, all_captions, render_batch, render_negative
from .tokenizer import build_tokenizer_files, load_tokenizer

STAGES = ("tokenizer", "clip", "clip_vision", "vae", "judge", "unet", "unet_balance")
# The shipped weights: every stage (UNet to step 5000, then one 5000-step unet_balance round).
DEFAULT_STAGES = STAGES
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def to_unit(imgs: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def clip_pixels(imgs: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


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
def _clip_groups(captions: list[str]):
    """Caption groups for the contrastive loss: each image has exactly one true caption per group."""
    idx = {c: i for i, c in enumerate(captions)}
    groups = []
    for syn in (False, True):
        def name(s, syn=syn):
            return SYNONYMS[s][0] if syn and s in SYNONYMS else s

        groups.append(([idx[f"a {c} {name(s)}"] for s in SHAPES for c in COLOURS], lambda s, c: SHAPES.index(s) * 4 + COLOURS.index(c)))
        groups.append(([idx[f"a {name(s)}"] for s in SHAPES], lambda s, c: SHAPES.index(s)))
    groups.append(([idx[f"a {c} shape"] for c in COLOURS], lambda s, c: COLOURS.index(c)))
    return groups


def tokenize(tok, texts: list[str]) -> torch.Tensor:
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids


@torch.no_grad()
def clip_zero_shot(model, tok, imgs: np.ndarray, shapes, colours) -> dict[str, float]:
    model.eval()
    ie = F.normalize(_features(model.get_image_features(pixel_values=clip_pixels(imgs))), dim=-1)
    res = {}
    for key, prompts, truth, classes in (
        ("shape", [f"a {s}" for s in SHAPES], shapes, SHAPES),
        ("colour", [f"a {c} shape" for c in COLOURS], colours, COLOURS),
        ("full", [f"a {c} {s}" for s in SHAPES for c in COLOURS], [f"{c} {s}" for s, c in zip(shapes, colours, strict=True)], [f"{c} {s}" for s in SHAPES for c in COLOURS]),
    ):
        te = F.normalize(_features(model.get_text_features(input_ids=tokenize(tok, prompts))), dim=-1)
        pred = (ie @ te.T).argmax(-1).numpy()
        res[key] = float(np.mean([classes[p] == t for p, t in zip(pred, truth, strict=True)]))
    disc = F.normalize(_features(model.get_text_features(input_ids=tokenize(tok, ["a disc", *[f"a {s}" for s in SHAPES[1:]]]))), dim=-1)
    pred = (ie @ disc.T).argmax(-1).numpy()
    res["shape_disc"] = float(np.mean([(SHAPES[p]) == t for p, t in zip(pred, shapes, strict=True)]))
    model.train()
    return res


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def stage_clip(out: Path, args) -> None:
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTextModel

    seed_all(args.seed + 1)
    t0 = time.time()
    tok = load_tokenizer(out / "clip")
    model = clip_model(len(tok), tok.bos_token_id, tok.eos_token_id)
    model.train()
    n_img, steps, bs = (512, 3, 32) if args.quick else (20000, 600, 64)
    imgs, shapes, colours, _ = render_batch(n_img, seed=args.seed * 1000 + 11)
    pix = clip_pixels(imgs)
    captions = all_captions(include_empty=False)
    # The text tower is causal and pools at the end-of-text token, so the pooled
    # output only depends on the first few positions: train on those (8 positions,
    # enough for every caption) -- identical result, a tenth of the cost.
    ids = tokenize(tok, captions)[:, :8]
    groups = _clip_groups(captions)
    targets = [torch.tensor([fn(s, c) for s, c in zip(shapes, colours, strict=True)]) for _, fn in groups]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    g = torch.Generator().manual_seed(args.seed + 2)
    for step in range(steps):
        b = torch.randint(0, n_img, (bs,), generator=g)
        ie = F.normalize(_features(model.get_image_features(pixel_values=pix[b])), dim=-1)
        te = F.normalize(_features(model.get_text_features(input_ids=ids)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * ie @ te.T
        loss = sum(F.cross_entropy(logits[:, gi], tg[b]) for (gi, _), tg in zip(groups, targets, strict=True)) / len(groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"clip step {step}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} ({time.time() - t0:.0f}s)")
    ev = render_batch(64 if args.quick else 1000, seed=args.seed * 1000 + 99)
    acc = clip_zero_shot(model, tok, ev[0], ev[1], ev[2])
    log(f"clip zero-shot on held-out renders: {acc} ({time.time() - t0:.0f}s)")
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
    encoder); the image tower, both projections and the logit scale keep training."""
    from transformers import CLIPModel

    seed_all(args.seed + 9)
    t0 = time.time()
    tok = load_tokenizer(out / "clip")
    model = CLIPModel.from_pretrained(out / "clip", local_files_only=True)
    model.train()
    model.text_model.requires_grad_(False)
    model.text_model.eval()
    n_img, steps, bs = (256, 3, 16) if args.quick else (20000, 800, 64)
    imgs, shapes, colours, _ = render_batch(n_img, seed=args.seed * 1000 + 12)
    pix = clip_pixels(imgs)
    captions = all_captions(include_empty=False)
    with torch.no_grad():
        pooled = model.text_model(input_ids=tokenize(tok, captions)).pooler_output  # frozen
    groups = _clip_groups(captions)
    targets = [torch.tensor([fn(s, c) for s, c in zip(shapes, colours, strict=True)]) for _, fn in groups]
    params = [p for n, p in model.named_parameters() if not n.startswith("text_model.")]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    g = torch.Generator().manual_seed(args.seed + 10)
    for step in range(steps):
        b = torch.randint(0, n_img, (bs,), generator=g)
        # the judge's augmentation: generated images are decoded latents, softer and noisier
        # than renders; without it the tower called blurry crosses and squares "circle"
        x = pix[b]
        if torch.rand(1, generator=g).item() < 0.5:
            x = _blur(x, g)
        x = x + torch.randn(x.shape, generator=g) * float(torch.empty(1).uniform_(0, 0.15, generator=g))
        ie = F.normalize(_features(model.get_image_features(pixel_values=x)), dim=-1)
        te = F.normalize(model.text_projection(pooled), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * ie @ te.T
        loss = sum(F.cross_entropy(logits[:, gi], tg[b]) for (gi, _), tg in zip(groups, targets, strict=True)) / len(groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"clip_vision step {step}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} ({time.time() - t0:.0f}s)")
    ev = render_batch(64 if args.quick else 1000, seed=args.seed * 1000 + 99)
    acc = clip_zero_shot(model, tok, ev[0], ev[1], ev[2])
    log(f"clip_vision zero-shot on held-out renders: {acc} ({time.time() - t0:.0f}s)")
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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))
    g = torch.Generator().manual_seed(args.seed + 4)
    for step in range(steps):
        x = x_all[torch.randint(0, n_img, (bs,), generator=g)]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (3 * 32 * 32)
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
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


def load_vae(out: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(out / "pipeline" / "vae", local_files_only=True).eval()


# --------------------------------------------------------------------------- judge
def _blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sigma = float(torch.empty(1).uniform_(0.3, 1.0, generator=g))
    k = torch.exp(-(torch.arange(-2, 3).float() ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def judge_data(n_pos: int, n_neg: int, seed: int):
    imgs, shapes, colours, _ = render_batch(n_pos, seed=seed)
    neg = np.empty((n_neg, 32, 32, 3), dtype=np.uint8)
    for i in range(n_neg):
        rng = np.random.default_rng([seed, 10**7 + i])
        neg[i] = render_negative(NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)], rng)
    x = np.concatenate([imgs, neg])
    ys = np.array([SHAPE_CLASSES.index(s) for s in shapes] + [SHAPE_CLASSES.index("none")] * n_neg)
    yc = np.array([COLOURS.index(c) for c in colours] + [-100] * n_neg)
    return x, torch.from_numpy(ys), torch.from_numpy(yc)


def stage_judge(out: Path, args) -> None:
    seed_all(args.seed + 5)
    t0 = time.time()
    n_pos, n_neg, steps, bs = (256, 64, 3, 32) if args.quick else (16000, 6000, 600, 64)
    x_np, ys, yc = judge_data(n_pos, n_neg, args.seed * 1000 + 31)
    x_all = to_unit(x_np)
    judge = ToyJudge().train()
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    g = torch.Generator().manual_seed(args.seed + 6)
    n = len(x_all)
    for step in range(steps):
        b = torch.randint(0, n, (bs,), generator=g)
        x = x_all[b]
        if torch.rand(1, generator=g).item() < 0.5:
            x = _blur(x, g)
        x = x + torch.randn(x.shape, generator=g) * float(torch.empty(1).uniform_(0, 0.08, generator=g))
        ls, lc = judge(x)
        loss = F.cross_entropy(ls, ys[b]) + F.cross_entropy(lc, yc[b], ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
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
def build_pipeline(out: Path, unet):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    pipe = StableDiffusionPipeline(
        vae=load_vae(out),
        text_encoder=CLIPTextModel.from_pretrained(out / "pipeline" / "text_encoder", local_files_only=True).eval(),
        tokenizer=load_tokenizer(out / "pipeline" / "tokenizer"),
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: list[int], steps: int = 20, guidance: float = 4.0, batch: int = 64) -> np.ndarray:
    outs = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        im = pipe(prompts[i : i + batch], generator=gens, num_inference_steps=steps, guidance_scale=guidance, height=32, width=32, output_type="np").images
        outs.append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(outs)


def eval_generation(pipe, judge, n_per_prompt: int = 2, guidance: float = 4.0, steps: int = 20, neutral: bool = False) -> dict:
    prompts, truth = [], []
    for s in SHAPES:
        for c in COLOURS:
            for _ in range(n_per_prompt):
                prompts.append(f"a {c} {s}")
                truth.append((s, c))
    seeds = list(range(len(prompts)))
    preds = judge.predict(generate(pipe, prompts, seeds, steps, guidance))
    res = {
        "shape": float(np.mean([p.shape == t[0] for p, t in zip(preds, truth, strict=True)])),
        "colour": float(np.mean([p.colour == t[1] for p, t in zip(preds, truth, strict=True)])),
    }
    if neutral:
        for prompt in ("a disc", "a shape", "a red shape", ""):
            k = 4 * n_per_prompt * 2
            pr = judge.predict(generate(pipe, [prompt] * k, list(range(1000, 1000 + k)), steps, guidance))
            res[f"dist[{prompt}]"] = {s: round(float(np.mean([p.shape == s for p in pr])), 3) for s in SHAPE_CLASSES}
    return res


def _unet_training_data(out: Path, n_img: int, render_seed: int):
    """What both UNet stages train on: the frozen text encoder's embedding of every caption
    (indexed by caption) and the VAE latents (posterior means, scaled) of ``n_img`` renders."""
    from transformers import CLIPTextModel

    vae = load_vae(out)
    tok = load_tokenizer(out / "pipeline" / "tokenizer")
    te = CLIPTextModel.from_pretrained(out / "pipeline" / "text_encoder", local_files_only=True).eval()
    captions = all_captions(include_empty=True)
    with torch.no_grad():
        cap_emb = te(tokenize(tok, captions)).last_hidden_state  # (n_captions, max_length, 256)
    imgs, shapes, colours, _ = render_batch(n_img, seed=render_seed)
    with torch.no_grad():
        lat = torch.cat([vae.encode(to_unit(imgs[i : i + 1000])).latent_dist.mean for i in range(0, n_img, 1000)]) * vae.config.scaling_factor
    return {c: i for i, c in enumerate(captions)}, cap_emb, lat, shapes, colours


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
    cap_idx, cap_emb, lat, shapes, colours = _unet_training_data(out, n_img, args.seed * 1000 + 41)
    log(f"unet: {n_img} latents {tuple(lat.shape[1:])} std {lat.std().item():.3f}, {len(cap_idx)} caption embeddings ({time.time() - t0:.0f}s)")
    rng = np.random.default_rng([args.seed, 42])
    from .render import sample_caption

    unet = unet_model(tuple(args.unet_width)).train()
    ema = deepcopy(unet).eval().requires_grad_(False)
    log(f"unet params {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M")
    noise_sched, weight = _noise_schedule()
    steps = 3 if args.quick else args.unet_steps
    bs = 8 if args.quick else args.unet_batch
    opt = torch.optim.AdamW(unet.parameters(), lr=args.unet_lr, weight_decay=0.01)
    warm = 200
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))
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
                _save_pipeline(out, ema)
                log(f"unet: saved best EMA checkpoint (step {step + 1}, shape+colour {score:.3f})")
        if last:
            break
    if capped and best is not None:
        ema.load_state_dict(best)  # safety stop: keep the best evaluated EMA checkpoint
        _save_pipeline(out, ema)
    else:
        _save_pipeline(out, ema)  # the recipe ships the final EMA
    _write_metrics(out, "unet", {"history": hist, "seconds": round(time.time() - t0, 1), "steps": steps, "batch": bs})
    log(f"unet done ({time.time() - t0:.0f}s)")


def _save_pipeline(out: Path, unet) -> None:
    pipe = build_pipeline(out, unet)
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    for cfg in (out / "pipeline").glob("*/config.json"):  # no machine-local paths in shipped files
        data = json.loads(cfg.read_text())
        if data.pop("_name_or_path", None) is not None:
            cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


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

    from .render import sample_caption

    seed_all(seed + 11)
    t0 = time.time()
    n_img = 256 if args.quick else args.balance_images
    cap_idx, cap_emb, lat, shapes, colours = _unet_training_data(out, n_img, seed * 1000 + 43)
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
        caps = []
        for i in b.tolist():
            u = rng.random() * mix[-1]
            if u < mix[0]:
                caps.append(sample_caption(shapes[i], colours[i], rng, p_empty=0.12))
            elif u < mix[1]:
                caps.append(f"a {colours[i]} shape")
            elif u < mix[2]:
                caps.append("a shape")
            else:
                caps.append("")
        ci = torch.tensor([cap_idx[c] for c in caps])
        loss = _denoise_step(unet, ema, opt, sched, noise_sched, weight, lat[b], cap_emb[ci], g, args.ema)
        if step % 100 == 0 or step == steps - 1:
            el = time.time() - t0
            log(f"unet_balance step {step}/{steps} loss {loss.item():.4f} ({el:.0f}s, {el / (step + 1):.2f}s/step)")
    _save_pipeline(out, ema)


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
