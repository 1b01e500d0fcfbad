"""A tiny, randomly initialised SD-shaped pipeline built offline (for engine tests).

Why: the generation engine must not care which model it drives, and its tests must
run on a 2-core CPU without the (still training) toy-world weights or any download.
The pipeline has the real SD v1 component types (CLIPTokenizer, CLIPTextModel,
UNet2DConditionModel with cross-attention, AutoencoderKL, DDIMScheduler), just tiny.
Seeded construction, so every process (test, SIGKILLed subprocess, rerun) builds
bit-identical weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from erasekit.toyworld.tokenizer import bytes_to_unicode

#: sampler settings the engine tests use with this pipeline
STEPS = 3
GUIDANCE = 4.0

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def write_tokenizer(folder: Path) -> Path:
    """Byte-level CLIP vocabulary without merges: every text tokenizes, one token per byte."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())  # the GPT-2/CLIP byte table, one implementation
    vocab_list = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab_list)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


def build_tiny_pipeline(tmp_dir: Path, seed: int = 0, size: int = 16) -> Any:
    """A StableDiffusionPipeline with ~100k random parameters; samples ``size``×``size`` images."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(Path(tmp_dir) / "tokenizer")))
    torch.manual_seed(seed)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=size // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=size,
    ).eval()
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
