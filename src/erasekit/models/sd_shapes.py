"""Randomly initialised models with Stable Diffusion's exact shapes (v1.4, 2.1, SDXL), and its real tokenizer, offline.

Tests and benchmarks of the closed-form editors need SD v1.4's layout (16
cross-attention blocks, 32 K/V projections of 320-1280 × 768, a 77-token
ViT-L/14 text encoder) and its real BPE vocabulary — token positions decide which
rows an editor moves — but no download. The vocabulary is the CLIP BPE merges
file that ``open_clip_torch`` ships (only the file is read; open_clip is never
imported); the weights are random, which changes no cost and no formula.

:func:`write_tiny_pipeline` writes a whole diffusers folder of one family (``sd1``, ``sd2``,
``sdxl``) with the real pipeline's component classes, config keys, block layout (so the same
number of cross-attention K/V projections: 32, 32, 140) and tokenizers, but small widths:
what tests and benchmarks load through the same code path as the real weights.
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


#: SD 2.1 (768-v): OpenCLIP-H text encoder, 1024-d context, v-prediction, 96 × 8 = 768 px
SD21_UNET_CONFIG: dict[str, Any] = {
    **SD14_UNET_CONFIG, "sample_size": 96, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True, "upcast_attention": True,
}
OPENCLIP_H_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 512,
}
#: SDXL base 1.0: three levels, transformer depths 1 / 2 / 10 (70 cross-attentions), 2048-d context, size/crop conditioning
SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "block_out_channels": (320, 640, 1280), "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048,
    "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
OPENCLIP_BIGG_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu",
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 1280,
}
SD_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4, "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
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


def _tiny(config: dict[str, Any], **small: Any) -> dict[str, Any]:
    return {**config, **small}


def tiny_components(family: str, tokenizer_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """The components of a ``family`` pipeline with the real classes, config keys and block layout, small widths."""
    from diffusers import AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tok = sd_clip_tokenizer(Path(tokenizer_dir) / "tokenizer")
    torch.manual_seed(seed)
    vae = AutoencoderKL(**_tiny(SD_VAE_CONFIG, block_out_channels=(32, 32, 32, 32), sample_size=64,
                                **({"scaling_factor": 0.13025, "force_upcast": True} if family == "sdxl" else {}))).eval()
    small_text = {"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    if family == "sd1":
        unet = UNet2DConditionModel(**_tiny(SD14_UNET_CONFIG, sample_size=8, block_out_channels=(32, 64, 64, 64),
                                            cross_attention_dim=32, attention_head_dim=8))
        text = CLIPTextModel(CLIPTextConfig(**_tiny(VIT_L14_TEXT_CONFIG, hidden_size=32, projection_dim=32, **small_text)))
        return {"unet": unet.eval(), "vae": vae, "text_encoder": text.eval(), "tokenizer": tok,
                "scheduler": DDIMScheduler(**SD_SCHEDULER_CONFIG)}
    if family == "sd2":
        unet = UNet2DConditionModel(**_tiny(SD21_UNET_CONFIG, sample_size=8, block_out_channels=(32, 64, 64, 64),
                                            cross_attention_dim=48, attention_head_dim=(1, 2, 4, 4)))
        text = CLIPTextModel(CLIPTextConfig(**_tiny(OPENCLIP_H_TEXT_CONFIG, hidden_size=48, projection_dim=32, **small_text)))
        tok2 = _pad_with_bang(tok, Path(tokenizer_dir) / "tokenizer_pad")
        return {"unet": unet.eval(), "vae": vae, "text_encoder": text.eval(), "tokenizer": tok2,
                "scheduler": DDIMScheduler(**{**SD_SCHEDULER_CONFIG, "prediction_type": "v_prediction"})}
    if family == "sdxl":
        text = CLIPTextModel(CLIPTextConfig(**_tiny(VIT_L14_TEXT_CONFIG, hidden_size=32, projection_dim=32, **small_text)))
        text2 = CLIPTextModelWithProjection(CLIPTextConfig(**_tiny(OPENCLIP_BIGG_TEXT_CONFIG, hidden_size=64, projection_dim=32,
                                                                   **small_text)))
        unet = UNet2DConditionModel(**_tiny(SDXL_UNET_CONFIG, sample_size=8, block_out_channels=(32, 64, 64),
                                            attention_head_dim=(1, 2, 4), cross_attention_dim=32 + 64,
                                            addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32))
        sched = EulerDiscreteScheduler.from_config({**SD_SCHEDULER_CONFIG, "timestep_spacing": "leading",
                                                    "interpolation_type": "linear", "use_karras_sigmas": False})
        return {"unet": unet.eval(), "vae": vae, "text_encoder": text.eval(), "text_encoder_2": text2.eval(), "tokenizer": tok,
                "tokenizer_2": _pad_with_bang(tok, Path(tokenizer_dir) / "tokenizer_2"), "scheduler": sched}
    raise ValueError(f"unknown family {family!r}; use sd1, sd2 or sdxl")


def _pad_with_bang(tok: Any, folder: Path) -> Any:
    """The OpenCLIP tokenizers of SD 2.x and SDXL's second encoder pad with "!" (id 0), not with EOS."""
    from transformers import CLIPTokenizer

    tok.save_pretrained(str(folder))
    return CLIPTokenizer.from_pretrained(str(folder), pad_token="!")


def write_tiny_pipeline(family: str, folder: str | Path, seed: int = 0) -> Path:
    """A diffusers folder of ``family`` (``sd1``, ``sd2``, ``sdxl``) with tiny random weights, as ``save_pretrained`` writes it."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = Path(folder)
    parts = tiny_components(family, folder.parent / f".{folder.name}-tokenizers", seed)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts, force_zeros_for_empty_prompt=True, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return folder


__all__ = ["OPENCLIP_BIGG_TEXT_CONFIG", "OPENCLIP_H_TEXT_CONFIG", "SD14_UNET_CONFIG", "SD21_UNET_CONFIG", "SDXL_UNET_CONFIG",
           "SD_SCHEDULER_CONFIG", "SD_VAE_CONFIG", "VIT_L14_TEXT_CONFIG", "open_clip_bpe", "sd14_text_encoder", "sd14_unet",
           "sd_clip_tokenizer", "tiny_components", "write_tiny_pipeline"]
