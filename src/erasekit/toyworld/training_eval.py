"""Held-out checks and pipeline assembly for the toy-world training stages.

The mini-CLIP's zero-shot accuracy on renders, the diffusers pipeline built around a
UNet (and saved without machine-local paths), generation, and the judge-scored
evaluation of generated images that :mod:`erasekit.toyworld.train` logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .judge import SHAPE_CLASSES
from .models import SCHEDULER_CONFIG
from .render import COLOURS, SHAPES
from .tokenizer import load_tokenizer
from .training_data import clip_pixels, load_vae, tokenize


def features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_zero_shot(model, tok, imgs: np.ndarray, shapes, colours) -> dict[str, float]:
    model.eval()
    ie = F.normalize(features(model.get_image_features(pixel_values=clip_pixels(imgs))), dim=-1)
    res = {}
    for key, prompts, truth, classes in (
        ("shape", [f"a {s}" for s in SHAPES], shapes, SHAPES),
        ("colour", [f"a {c} shape" for c in COLOURS], colours, COLOURS),
        ("full", [f"a {c} {s}" for s in SHAPES for c in COLOURS], [f"{c} {s}" for s, c in zip(shapes, colours, strict=True)], [f"{c} {s}" for s in SHAPES for c in COLOURS]),
    ):
        te = F.normalize(features(model.get_text_features(input_ids=tokenize(tok, prompts))), dim=-1)
        pred = (ie @ te.T).argmax(-1).numpy()
        res[key] = float(np.mean([classes[p] == t for p, t in zip(pred, truth, strict=True)]))
    disc = F.normalize(features(model.get_text_features(input_ids=tokenize(tok, ["a disc", *[f"a {s}" for s in SHAPES[1:]]]))), dim=-1)
    pred = (ie @ disc.T).argmax(-1).numpy()
    res["shape_disc"] = float(np.mean([(SHAPES[p]) == t for p, t in zip(pred, shapes, strict=True)]))
    model.train()
    return res


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


def save_pipeline(out: Path, unet) -> None:
    pipe = build_pipeline(out, unet)
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    for cfg in (out / "pipeline").glob("*/config.json"):  # no machine-local paths in shipped files
        data = json.loads(cfg.read_text())
        if data.pop("_name_or_path", None) is not None:
            cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


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
