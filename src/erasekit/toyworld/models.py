"""Architectures (configs) of the toy-world models. Pure construction, no training."""

from __future__ import annotations

# SD v1.4 scheduler config (DDIM), so the same code paths serve SD v1.4.
SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
}

TEXT_HIDDEN = 256
LATENT_CHANNELS = 4


def text_config(vocab_size: int, bos_id: int, eos_id: int, max_len: int = 77):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_len,
        projection_dim=128,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        hidden_act="quick_gelu",
    )


def vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=32,
        patch_size=4,
        num_channels=3,
        hidden_size=96,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=128,
        hidden_act="quick_gelu",
    )


def clip_model(vocab_size: int, bos_id: int, eos_id: int):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=text_config(vocab_size, bos_id, eos_id).to_dict(),
        vision_config=vision_config().to_dict(),
        projection_dim=128,
        logit_scale_init_value=2.6592,
    )
    return CLIPModel(cfg)


def vae_model():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=32,
        scaling_factor=1.0,
        mid_block_add_attention=False,
    )


def unet_model(width: tuple[int, int, int] = (32, 64, 64)):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        # cross-attention at every level (8x8, 4x4, 2x2) and the mid block: with it
        # only at the coarse levels, colour binding lagged far behind shape
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=width,
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )
