"""Inference-time techniques (SLD, negative prompt): the sampler changes, the weights do not.

SLD's guided noise prediction is checked against a re-implementation of the published update
rule (the authors' StableDiffusionPipelineSafe, Eq. 3-8) on fixed tensors; the guidance loop
against diffusers' own pipeline call; both techniques end to end on the toy world through
``erasekit run`` (their images are cached under other keys than the base model's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.toy_bench import CIRCLE, NEUTRAL_TARGETS, OTHERS, SHAPE_TARGETS, TOY_READY, ToyBench

from erasekit.cli import main
from erasekit.generation.sampling import guided_denoise, install, installed, sample
from erasekit.techniques.sld import (
    SLD_CONCEPT,
    SLD_CONFIGS,
    SLDConfig,
    SLDParams,
    safety_text,
    sld_noise,
    sld_params,
)


def _ref_sld(uncond, text, safety, steps, guidance, p):
    """The published rule, step by step (float64, written from the reference pipeline's loop)."""
    out, momentum = [], None
    for i in range(steps):
        u, t, s = uncond[i], text[i], safety[i]
        noise_guidance = t - u
        if p["sld_guidance_scale"] > 1.0:
            if momentum is None:
                momentum = np.zeros_like(noise_guidance)
            scale = np.minimum(np.abs(t - s) * p["sld_guidance_scale"], 1.0)                     # Eq. 6
            scale = np.where((t - s) >= p["sld_threshold"], 0.0, scale)                          # Eq. 6
            safety_guidance = (s - u) * scale                                                    # Eq. 4
            safety_guidance = safety_guidance + p["sld_momentum_scale"] * momentum               # Eq. 7
            momentum = p["sld_mom_beta"] * momentum + (1 - p["sld_mom_beta"]) * safety_guidance  # Eq. 8
            if i >= p["sld_warmup_steps"]:
                noise_guidance = noise_guidance - safety_guidance                                # Eq. 3
        out.append(u + guidance * noise_guidance)
    return out


@pytest.mark.parametrize("name", ["weak", "medium", "strong", "max"])
def test_sld_guided_noise_equals_the_published_update_rule(name):
    rng = np.random.default_rng(0)
    steps = 20
    # small differences, so that the element-wise clamp and the threshold both bite
    uncond, text, safety = (rng.normal(0, 0.02, size=(steps, 2, 4, 8, 8)) for _ in range(3))
    p = SLD_CONFIGS[name]
    ref = _ref_sld(uncond, text, safety, steps, 7.5, p.__dict__)
    state: dict = {}
    for i in range(steps):
        ours = sld_noise(torch.from_numpy(uncond[i]), torch.from_numpy(text[i]), torch.from_numpy(safety[i]), i, 7.5, p, state)
        np.testing.assert_allclose(ours.numpy(), ref[i], rtol=0, atol=1e-12)
    plain = [u + 7.5 * (t - u) for u, t in zip(uncond, text, strict=True)]
    assert any(np.abs(r - q).max() > 1e-6 for r, q in zip(ref, plain, strict=True))  # the guidance did something


def test_sld_is_plain_cfg_when_its_scale_is_at_most_one():
    rng = np.random.default_rng(1)
    u, t, s = (torch.from_numpy(rng.normal(size=(3, 4))) for _ in range(3))
    p = SLDParams(1.0, 0, 0.0, 0.5, 0.7)
    assert torch.equal(sld_noise(u, t, s, 5, 4.0, p, {}), u + 4.0 * (t - u))


def test_sld_configs_overrides_and_safety_concept():
    assert SLD_CONFIGS["medium"] == SLDParams(1000.0, 10, 0.01, 0.3, 0.4)
    assert SLD_CONFIGS["max"] == SLDParams(5000.0, 0, 1.0, 0.5, 0.7)
    c = SLDConfig(erase_concept="nudity", sld_config="strong", sld_warmup_steps=3)
    assert sld_params(c) == SLDParams(2000.0, 3, 0.025, 0.5, 0.7)
    assert safety_text(c) == SLD_CONCEPT
    assert safety_text(SLDConfig(erase_concept=["circle", "disc"])) == "circle, disc"
    assert safety_text(SLDConfig(erase_concept="circle", safety_concept="a round thing")) == "a round thing"


@pytest.fixture(scope="module")
def toy():
    if not TOY_READY:
        pytest.skip("toy-world weights not built")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return ToyBench()


def test_the_guidance_loop_equals_diffusers_own_pipeline(toy):
    """guided_denoise with plain classifier-free guidance draws what StableDiffusionPipeline draws."""
    toy.reset()
    prompts, gens = ["a red circle", "a blue square"], lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]
    kw = {"steps": 20, "guidance": 4.0, "height": 32, "width": 32, "output_type": "np"}
    with torch.no_grad():
        ref = np.stack(sample(toy.pipe, prompts, ["", ""], generators=gens(), **kw))
        ours = np.stack(guided_denoise(toy.pipe, prompts, ["", ""], ["x", "x"], lambda u, t, s, i, st: u + st["guidance"] * (t - u),
                                       generators=gens(), **kw))
    assert np.abs(ours - ref).max() < 2e-3  # batch composition only (3n vs 2n rows): float rounding


def test_sld_and_negative_prompt_on_the_toy_world(toy):
    """Measured (judge, 8 seeds). Prompts that name the circle: the base draws 1.00 circles; the
    negative prompt and SLD strong leave 1.00 (the positive prompt names what the negative one
    removes), SLD max 0.65. Neutral prompts that draw circles without naming them ("a red",
    "a red shape", "a shape", ...: base 0.375, the situation of I2P's implicit prompts): the
    negative prompt lowers the rate to 0.04, SLD strong to 0.16. Other shapes are kept."""
    neutral = NEUTRAL_TARGETS + SHAPE_TARGETS
    toy.reset()
    base, base_neutral = toy.score(CIRCLE), toy.score(neutral)
    toy.edit("sld", erase_concept="circle", sld_config="max")
    assert installed(toy.pipe) is not None
    sld_max, others = toy.score(CIRCLE), toy.score(OTHERS)
    toy.edit("sld", erase_concept="circle", sld_config="strong")
    sld_strong = toy.score(neutral)
    toy.edit("negative_prompt", erase_concept="circle")
    neg, neg_neutral = toy.score(CIRCLE), toy.score(neutral)
    toy.reset()
    assert installed(toy.pipe) is None
    assert base_neutral.circle_rate >= 0.25, base_neutral  # the neutral prompts do draw circles
    assert sld_max.circle_rate <= base.circle_rate - 0.2, (sld_max, base)
    assert sld_strong.circle_rate <= base_neutral.circle_rate - 0.15, (sld_strong, base_neutral)
    assert neg_neutral.circle_rate <= base_neutral.circle_rate - 0.25, (neg_neutral, base_neutral)
    assert others.shape_acc >= 0.95, others
    assert neg.circle_rate <= base.circle_rate, neg
    assert neg_neutral.colour_acc >= 0.95, neg_neutral  # what the neutral prompt asks for is still drawn


@pytest.mark.parametrize("technique,cfg", [("sld", {"sld_config": "max"}), ("negative_prompt", {})])
def test_inference_time_runs_cache_apart_from_the_base_model(tmp_path, technique, cfg):
    if not TOY_READY:
        pytest.skip("toy-world weights not built")
    run = {"output_dir": str(tmp_path / "o"), "compare_to_base": True,
           "technique": {"name": technique, "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle", **cfg}},
           "metric": {"name": "asr_custom", "config": {"prompts": ["a red circle", "a circle"], "images_per_prompt": 2}}}
    (tmp_path / "c.json").write_text(json.dumps(run))
    assert main(["run", str(tmp_path / "c.json"), "--no-progress"]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["model"]["fingerprint"] != rep["model"]["base_fingerprint"]
    assert rep["technique"]["details"]["edited_parameters"] == 0 and rep["technique"]["details"]["sampling"]["name"] == technique
    rows = [json.loads(line) for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    erased = {r["cache_key"] for r in rows if r["model"] == "erased"}
    base = {r["cache_key"] for r in rows if r["model"] == "base"}
    assert len(erased) == len(base) == 4 and not erased & base
    from PIL import Image

    def px(key):
        return np.asarray(Image.open(next((tmp_path / "o").rglob(f"{key}.png"))), dtype=float)

    e = sorted((r for r in rows if r["model"] == "erased"), key=lambda r: (r["prompt"], r["seed"]))
    b = sorted((r for r in rows if r["model"] == "base"), key=lambda r: (r["prompt"], r["seed"]))
    assert max(np.abs(px(x["cache_key"]) - px(y["cache_key"])).mean() for x, y in zip(e, b, strict=True)) > 0.5
    # a second run reuses every image (the hook is part of the identity, not of chance)
    assert main(["run", str(tmp_path / "c.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["images"]["generated"] == 0


def test_install_and_remove_a_hook():
    class P:
        pass

    p = P()
    from erasekit.techniques.negative_prompt import NegativePromptHook

    h = NegativePromptHook("circle")
    install(p, h)
    assert installed(p) is h and h.negatives(["", "blurry"]) == ["circle", "blurry, circle"]
    install(p, None)
    assert installed(p) is None

