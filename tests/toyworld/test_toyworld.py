"""Toy world: renderer, tokenizer, shipped judge / mini-CLIP / pipeline bars, recipe smoke test.

The generation bars run on the SHIPPED weights (no retraining in CI).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from erasekit import toyworld  # noqa: E402
from erasekit.toyworld import COLOURS, SHAPES, TOY_DEFAULTS  # noqa: E402
from erasekit.toyworld.render import NEGATIVE_KINDS, render, render_batch, render_negative  # noqa: E402

N_SEEDS = 8


def _generate(pipe, prompts, seeds):
    """One generator per image (as the product does), default toy sampler settings."""
    out = []
    for i in range(0, len(prompts), 64):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + 64]]
        im = pipe(prompts[i : i + 64], generator=gens, output_type="np", **TOY_DEFAULTS).images
        out.append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def judge():
    return toyworld.load_judge()


@pytest.fixture(scope="module")
def pipe():
    return toyworld.load_pipeline()


# ----------------------------------------------------------------------------- renderer
def test_render_deterministic_and_shaped():
    a = render("circle", "red", np.random.default_rng(3))
    b = render("circle", "red", np.random.default_rng(3))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    i1, s1, c1, cap1 = render_batch(10, seed=5)
    i2, s2, c2, cap2 = render_batch(20, seed=5)
    assert np.array_equal(i1, i2[:10]) and s1 == s2[:10] and cap1 == cap2[:10]  # image i depends on (seed, i) only
    assert set(s2) <= set(SHAPES) and set(c2) <= set(COLOURS)
    blank = render(None, None, np.random.default_rng(0))
    assert blank.max() < 90  # dark background only
    for kind in NEGATIVE_KINDS:
        assert render_negative(kind, np.random.default_rng(1)).shape == (32, 32, 3)


def test_captions():
    caps = toyworld.captions_for("circle", "red")
    assert {"a red circle", "a circle", "a red disc", "a disc", "a red shape", "a shape"} == set(caps)
    assert "" in toyworld.all_captions() and len(toyworld.full_captions()) == 16
    assert toyworld.SYNONYMS == {"circle": ("disc",)}
    assert set(TOY_DEFAULTS) >= {"num_inference_steps", "guidance_scale", "height", "width"}


def test_tokenizer_words_are_single_tokens():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(toyworld.PIPELINE_DIR / "tokenizer")
    assert tok.model_max_length == 32  # documented smaller length (see toyworld README)
    for w in (*SHAPES, *COLOURS, "disc", "shape", "photo", "nudity", "person"):
        assert len(tok(f"a {w}").input_ids) == 4, w
    ids = tok("zebra ✓ 123").input_ids  # arbitrary text still tokenizes (byte-level)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) > 4


# ----------------------------------------------------------------------------- judge
def test_judge_on_held_out_renders(judge):
    imgs, shapes, colours, _ = render_batch(400, seed=123_456)
    preds = judge.predict(imgs)
    assert np.mean([p.shape == s for p, s in zip(preds, shapes, strict=True)]) >= 0.99
    assert np.mean([p.colour == c for p, c in zip(preds, colours, strict=True)]) >= 0.99
    p = preds[0]
    assert set(p.shape_probs) == {*SHAPES, "none"} and 0 <= p.shape_conf <= 1 and set(p.colour_probs) == set(COLOURS)
    # no clear shape -> "none", not a forced shape
    rng = np.random.default_rng(77)
    neg = np.stack([render_negative(k, rng) for k in ("blank", "noise", "blob") for _ in range(20)])
    assert np.mean([q.shape == "none" for q in judge.predict(neg)]) >= 0.9
    # a halfway blend of two shapes (weight 0.4-0.6) is no shape: measured 0.68 "none" on 500
    # (a judge trained without morphs: 0.00 -- it snaps them to the nearest class)
    morphs = np.stack([render_negative("morph", rng) for _ in range(100)])
    assert np.mean([q.shape == "none" for q in judge.predict(morphs)]) >= 0.55
    # PIL input gives the same answer as arrays
    from PIL import Image

    again = judge.predict([Image.fromarray(im) for im in imgs[:8]])
    assert [q.shape for q in again] == [q.shape for q in preds[:8]]


# ----------------------------------------------------------------------------- mini-CLIP
def test_mini_clip_zero_shot():
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(toyworld.CLIP_DIR).eval()
    proc = CLIPProcessor.from_pretrained(toyworld.CLIP_DIR)
    imgs, shapes, colours, _ = render_batch(200, seed=654_321)
    from PIL import Image

    pil = [Image.fromarray(im) for im in imgs]
    for prompts, truth, classes in (
        ([f"a {s}" for s in SHAPES], shapes, SHAPES),
        ([f"a {c} shape" for c in COLOURS], colours, COLOURS),
    ):
        inputs = proc(text=prompts, images=pil, return_tensors="pt", padding="max_length")
        with torch.no_grad():
            logits = model(**inputs).logits_per_image
        acc = np.mean([classes[i] == t for i, t in zip(logits.argmax(-1).tolist(), truth, strict=True)])
        assert acc >= 0.95, (prompts, acc)


def test_pipeline_text_encoder_is_clip_text_tower():
    from safetensors.torch import load_file

    te = load_file(str(toyworld.PIPELINE_DIR / "text_encoder" / "model.safetensors"))
    cl = load_file(str(toyworld.CLIP_DIR / "model.safetensors"))
    k = next(k for k in te if k.endswith("token_embedding.weight"))
    k2 = next(k for k in cl if k.endswith("token_embedding.weight") and "text" in k)
    assert torch.equal(te[k], cl[k2])
    assert te[k].shape[1] == 256


# ----------------------------------------------------------------------------- pipeline bars
def test_pipeline_loads_with_plain_diffusers_api():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(
        toyworld.PIPELINE_DIR, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    assert isinstance(p.scheduler, DDIMScheduler)
    cfg = p.scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps) == ("scaled_linear", 0.00085, 0.012, 1000)
    assert cfg.steps_offset == 1 and cfg.clip_sample is False and cfg.set_alpha_to_one is False
    assert p.text_encoder.config.hidden_size == 256
    n_attn2 = sum(1 for n, _ in p.unet.named_modules() if n.endswith("attn2"))
    assert n_attn2 > 0


def test_generation_bars(pipe, judge):
    """8 seeds x 16 "a {colour} {shape}" prompts: judge shape and colour accuracy >= 0.90."""
    prompts, truth = [], []
    for s in SHAPES:
        for c in COLOURS:
            prompts += [f"a {c} {s}"] * N_SEEDS
            truth += [(s, c)] * N_SEEDS
    preds = judge.predict(_generate(pipe, prompts, list(range(len(prompts)))))
    shape_acc = np.mean([p.shape == t[0] for p, t in zip(preds, truth, strict=True)])
    colour_acc = np.mean([p.colour == t[1] for p, t in zip(preds, truth, strict=True)])
    print(json.dumps({"shape_acc": shape_acc, "colour_acc": colour_acc}))
    assert shape_acc >= 0.90
    assert colour_acc >= 0.90


def test_synonym_disc_draws_circles(pipe, judge):
    prompts = ["a disc"] * 16 + [f"a {c} disc" for c in COLOURS for _ in range(4)]
    preds = judge.predict(_generate(pipe, prompts, [10_000 + i for i in range(len(prompts))]))
    rate = np.mean([p.shape == "circle" for p in preds])
    print(json.dumps({"disc_circle_rate": rate}))
    assert rate >= 0.85


def test_neutral_captions_draw_all_shapes(pipe, judge):
    """On "a shape", "a {colour} shape" and "" no shape exceeds 35% of the images.

    256 images per caption: the bar is about the model's distribution, so the sample must
    be big enough that a perfectly uniform model passes. With 32 per caption, sampling noise
    alone breaks the bar somewhere among 6 captions x 4 shapes 90% of the time (multinomial
    simulation); with 256, 0.4% (1536 images, about a minute on a 2-core CPU)."""
    n = 256
    prompts = toyworld.neutral_captions()
    imgs = _generate(pipe, [p for p in prompts for _ in range(n)], [20_000 + i for i in range(n * len(prompts))])
    preds = judge.predict(imgs)
    report = {}
    for j, prompt in enumerate(prompts):
        counts = Counter(p.shape for p in preds[j * n : (j + 1) * n])
        report[prompt] = {s: counts.get(s, 0) / n for s in (*SHAPES, "none")}
    print(json.dumps(report))
    for prompt, dist in report.items():
        for s in SHAPES:
            assert dist[s] <= 0.35, (prompt, dist)


# ----------------------------------------------------------------------------- recipe
def test_training_recipe_quick(tmp_path):
    from erasekit.toyworld import train

    train.main(["--out", str(tmp_path), "--quick", "--threads", "1"])
    for rel in (
        "pipeline/model_index.json",
        "pipeline/unet/diffusion_pytorch_model.safetensors",
        "pipeline/vae/diffusion_pytorch_model.safetensors",
        "pipeline/text_encoder/model.safetensors",
        "pipeline/tokenizer/vocab.json",
        "pipeline/scheduler/scheduler_config.json",
        "clip/model.safetensors",
        "judge/model.safetensors",
        "judge/config.json",
    ):
        assert (tmp_path / rel).exists(), rel
    assert (tmp_path / "clip/processor_config.json").exists() or (tmp_path / "clip/preprocessor_config.json").exists()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    p = toyworld.load_pipeline(path=tmp_path / "pipeline")
    img = p("a red circle", num_inference_steps=2, guidance_scale=4.0, height=32, width=32, output_type="np").images
    assert img.shape == (1, 32, 32, 3)


def test_shipped_weights_size_budget():
    total = sum(f.stat().st_size for f in toyworld.WEIGHTS_DIR.rglob("*") if f.is_file())
    assert total <= 25 * 1024 * 1024, total
    assert not list(toyworld.WEIGHTS_DIR.rglob("*.bin")) and not list(toyworld.WEIGHTS_DIR.rglob("*.pt"))
    for cfg in toyworld.WEIGHTS_DIR.rglob("*.json"):  # nothing machine-local in what we ship
        assert "_name_or_path" not in json.loads(cfg.read_text()), cfg
