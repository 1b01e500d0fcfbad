"""Randomly initialised models with Stable Diffusion v1.4's exact shapes, and its real tokenizer, offline.

Tests and benchmarks of the closed-form editors need SD v1.4's layout (16
cross-attention blocks, 32 K/V projections of 320-1280 × 768, a 77-token
ViT-L/14 text encoder) and its real BPE vocabulary — token positions decide which
rows an editor moves — but no download. The vocabulary is the CLIP BPE merges
file that ``open_clip_torch`` ships (only the file is read; open_clip is never
imported); the weights are random, which changes no cost and no formula.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch

SD14_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2, "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}
VIT_L14_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407, "projection_dim": 768,
}


def open_clip_bpe() -> Path | None:
    """open_clip_torch's ``bpe_simple_vocab_16e6.txt.gz`` when the package is installed, else None."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    return path if path.is_file() else None


def sd_clip_tokenizer(folder: str | Path) -> Any:
    """SD v1.4's CLIPTokenizer (49,408 tokens, pad = EOS, 77 positions), written into ``folder`` from open_clip's merges.

    Raises FileNotFoundError when open_clip_torch is not installed.
    """
    from transformers import CLIPTokenizer

    from erasekit.toyworld.tokenizer import bytes_to_unicode

    bpe = open_clip_bpe()
    if bpe is None:
        raise FileNotFoundError("open_clip_torch is not installed: its CLIP BPE vocabulary is needed (pip install open_clip_torch)")
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
                                                               "do_lower_case": True, **special}))
    tok = CLIPTokenizer.from_pretrained(str(folder))
    if len(tok) != 49408:  # pragma: no cover - a changed vocabulary file
        raise ValueError(f"the CLIP vocabulary built from {bpe} has {len(tok)} tokens, not 49408")
    return tok


def sd14_unet(seed: int = 0) -> Any:
    """A UNet2DConditionModel with SD v1.4's configuration and random weights (eval mode)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**SD14_UNET_CONFIG).eval()


def sd14_text_encoder(seed: int = 0) -> Any:
    """A CLIPTextModel with ViT-L/14's text configuration (SD v1.4's encoder) and random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**VIT_L14_TEXT_CONFIG)).eval()


__all__ = ["SD14_UNET_CONFIG", "VIT_L14_TEXT_CONFIG", "open_clip_bpe", "sd14_text_encoder", "sd14_unet", "sd_clip_tokenizer"]
