"""What the toy-world training stages (:mod:`erasekit.toyworld.train`) train on.

Renders as tensors (``[-1, 1]`` for the VAE/judge/UNet, CLIP-normalised for the
mini-CLIP), the caption groups of the contrastive loss, the blur+noise augmentation
shared by the judge and the CLIP image tower, the judge's positives and negatives,
and the UNet's precomputed caption embeddings and latents. Everything is a pure
function of its seeds; the generators are consumed in the recipe's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .judge import SHAPE_CLASSES
from .render import (
    COLOURS,
    NEGATIVE_KINDS,
    SHAPES,
    SYNONYMS,
    all_captions,
    render_batch,
    render_negative,
    sample_caption,
)
from .tokenizer import load_tokenizer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_unit(imgs: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def clip_pixels(imgs: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def tokenize(tok, texts: list[str]) -> torch.Tensor:
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids


# --------------------------------------------------------------------------- mini-CLIP
def clip_groups(captions: list[str]):
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


def contrastive_data(n_img: int, render_seed: int):
    """The mini-CLIP's training set: ``n_img`` renders (CLIP pixels), every non-empty
    caption, the caption groups and, per group, each render's true caption."""
    imgs, shapes, colours, _ = render_batch(n_img, seed=render_seed)
    pix = clip_pixels(imgs)
    captions = all_captions(include_empty=False)
    groups = clip_groups(captions)
    targets = [torch.tensor([fn(s, c) for s, c in zip(shapes, colours, strict=True)]) for _, fn in groups]
    return pix, captions, groups, targets


# --------------------------------------------------------------------------- augmentation
def blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sigma = float(torch.empty(1).uniform_(0.3, 1.0, generator=g))
    k = torch.exp(-(torch.arange(-2, 3).float() ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def augment(x: torch.Tensor, g: torch.Generator, max_noise: float) -> torch.Tensor:
    """The judge's augmentation (generated images are decoded latents, softer and noisier
    than renders): a blur half of the time, then Gaussian noise of a random std in
    ``[0, max_noise)``; every draw comes from ``g``."""
    if torch.rand(1, generator=g).item() < 0.5:
        x = blur(x, g)
    return x + torch.randn(x.shape, generator=g) * float(torch.empty(1).uniform_(0, max_noise, generator=g))


# --------------------------------------------------------------------------- judge
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


# --------------------------------------------------------------------------- unet
def load_vae(out: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(out / "pipeline" / "vae", local_files_only=True).eval()


def unet_training_data(out: Path, n_img: int, render_seed: int):
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


def balance_caption(shape: str, colour: str, rng: np.random.Generator, mix: np.ndarray) -> str:
    """One caption of the ``unet_balance`` mix (``mix``: cumulative weights of standard /
    colour-only / "a shape" / "")."""
    u = rng.random() * mix[-1]
    if u < mix[0]:
        return sample_caption(shape, colour, rng, p_empty=0.12)
    if u < mix[1]:
        return f"a {colour} shape"
    if u < mix[2]:
        return "a shape"
    return ""
