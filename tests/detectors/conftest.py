"""Fixtures for detector tests: tiny randomly initialised models saved as real model folders.

They exercise the real loading and inference code (transformers CLIPModel,
BlipForQuestionAnswering, the toy judge class) without trained weights; tests
that need trained behaviour use the shipped toy world and skip until it exists.
The random mini-CLIP (``tiny_clip_dir``) is shared with the metric tests: tests/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def random_judge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ToyJudge saved in the shipped layout (model.safetensors + config.json)."""
    import torch

    from erasekit.toyworld.judge import ToyJudge

    out = tmp_path_factory.mktemp("judge") / "judge"
    torch.manual_seed(0)
    ToyJudge().eval().save(out)
    return out


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random BlipForQuestionAnswering + BlipProcessor folder with a 20-word BERT vocabulary."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
    )

    out = tmp_path_factory.mktemp("blip") / "blip"
    out.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "yes", "no", "circle", "square", "red", "blue",
             "what", "is", "shape", "there", "a", "?", "the", "color"]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(str(out / "vocab.txt"), bos_token="[DEC]", model_max_length=32)
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, encoder_hidden_size=32,
                         pad_token_id=0, bos_token_id=5, sep_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForQuestionAnswering(cfg).eval().save_pretrained(out)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def toy_renders() -> dict[str, list]:
    """Procedural toy images by shape (16 each), as PIL images."""
    from PIL import Image

    from erasekit.toyworld import SHAPES, render_batch

    out = {}
    for i, s in enumerate(SHAPES):
        imgs, _, _, _ = render_batch(16, seed=100 + i, shapes=[s])
        out[s] = [Image.fromarray(a) for a in imgs]
    return out


@pytest.fixture()
def noise_images():
    """``noise_images(n, size=32, seed=0)`` → n random RGB PIL images."""
    from PIL import Image

    def make(n: int, size: int = 32, seed: int = 0) -> list:
        rng = np.random.default_rng(seed)
        return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]

    return make
