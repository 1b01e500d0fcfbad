"""Tiny randomly initialised model folders for tests, built offline in seconds: an SD-shaped
diffusers pipeline (as a folder or loaded) and a mini-CLIP-shaped CLIPModel.

Randomly initialised (so it draws noise) but with exactly the layout of an SD v1.x folder:
it exercises the real loading, editing and generation code paths. Used by tests/conftest.py
(the ``tiny_sd_dir`` and ``tiny_clip_dir`` fixtures), tests/generation/conftest.py (the
``tiny_pipe`` fixture) and by tests that need a second base model.

``build_tiny_pipeline`` is the generation-engine tests' pipeline. Why: the engine must not care
which model it drives, and its tests must run on a 2-core CPU without the toy-world weights or
any download. It is ``build_tiny_sd``'s pipeline with a byte-level tokenizer (every prompt
tokenizes distinctly); seeded construction, so every process (test, SIGKILLed subprocess,
rerun) builds bit-identical weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: sampler settings the engine tests use with ``build_tiny_pipeline``
STEPS = 3
GUIDANCE = 4.0

TINY_WORDS = ["a", "photo", "of", "red", "green", "circle", "square", "cat", "dog", "nudity", "person", "shape"]


def _write_tiny_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose vocabulary is single characters + whole words."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in TINY_WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz"))
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for w in TINY_WORDS:
        # left-to-right merges building each word; fine for a fixed tiny word list
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            a, b = parts[0], parts[1]
            m = f"{a} {b}"
            if m not in merges:
                merges.append(m)
            parts = [a + b] + parts[2:]
            vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16, "tokenizer_class": "CLIPTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


def _write_byte_tokenizer(folder: Path) -> None:
    """Byte-level CLIP vocabulary without merges: every text tokenizes (one token per byte),
    so any two different prompts get different tokens (the generation engine's tests need that)."""
    from erasekit.toyworld.tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())  # the GPT-2/CLIP byte table, one implementation
    vocab_list = ["<|startoftext|>", "<|endoftext|>", *chars, *[c + "</w>" for c in chars]]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab_list)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


def build_tiny_sd(folder: Path, seed: int = 0, byte_tokenizer: bool = False) -> Path:
    """Write a tiny randomly initialised StableDiffusionPipeline folder (16×16 px, 2 cross-attn blocks).

    ``byte_tokenizer``: one token per byte (any text, 77 positions) instead of the small word vocabulary."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    (_write_byte_tokenizer if byte_tokenizer else _write_tiny_tokenizer)(folder / "_tok")
    tok = CLIPTokenizer.from_pretrained(folder / "_tok")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=tok.model_max_length,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
                        latent_channels=4, norm_num_groups=8, sample_size=16)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_clip(out: Path, seed: int = 0) -> Path:
    """An untrained mini-CLIP-shaped CLIPModel + CLIPProcessor folder (96-d vision tower)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPProcessor

    from erasekit.toyworld.models import clip_model
    from erasekit.toyworld.tokenizer import build_tokenizer_files, load_tokenizer

    build_tokenizer_files(out)
    tok = load_tokenizer(out)
    torch.manual_seed(seed)
    model = clip_model(len(tok), tok.bos_token_id, tok.eos_token_id).eval()
    model.save_pretrained(out, safe_serialization=True)
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
            image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
        ),
        tokenizer=tok,
    )
    proc.save_pretrained(out)
    return out


def build_tiny_pipeline(tmp_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionPipeline with ~100k random parameters sampling 16×16 images."""
    from diffusers import StableDiffusionPipeline

    folder = build_tiny_sd(Path(tmp_dir) / "pipe", seed=seed, byte_tokenizer=True)
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_random_inception(path: Path, seed: int = 0) -> Path:
    """A randomly initialised torch-fidelity InceptionV3 state dict (the FID network's exact
    layout) saved with torch.save: the Inception path runs without the real weights."""
    import pytest
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    mp = pytest.MonkeyPatch()
    mp.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    torch.manual_seed(seed)
    try:
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    torch.save(net.state_dict(), path)
    return path
