"""SD 2.x and SDXL: loading by model_index.json, the family's own conditioning, closed-form edits, end to end.

The folders are written by :func:`erasekit.models.sd_shapes.write_tiny_pipeline`: the real
pipelines' component classes, config keys and block layout (so the real number of
cross-attention K/V projections), the real CLIP BPE vocabulary, tiny widths, random weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from erasekit.cli import main
from erasekit.errors import ConfigError
from erasekit.models.conditioning import context_dim, encode_condition, encode_context
from erasekit.models.families import detect_family, family_of
from erasekit.models.loading import load_pipeline_folder
from erasekit.models.sd_shapes import open_clip_bpe, write_tiny_pipeline
from erasekit.techniques.closed_form import cross_attention_kv, reference_refine
from erasekit.techniques.mace import MACE, MACEConfig, build_plan, config_rows, encode_plan, resolve_prior

pytestmark = pytest.mark.skipif(open_clip_bpe() is None, reason="open_clip_torch (CLIP BPE vocabulary) not installed")

PROMPTS = ["a cat", "a photo of a cat on a sofa", "van gogh style painting of a church", ""]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: write_tiny_pipeline(f, root / f, seed=i) for i, f in enumerate(("sd1", "sd2", "sdxl"))}


@pytest.fixture(scope="module")
def pipes(folders) -> dict[str, object]:
    return {f: load_pipeline_folder(p) for f, p in folders.items()}


def test_family_is_read_from_the_folder_configs(folders, pipes):
    got = {f: detect_family(p) for f, p in folders.items()}
    assert [got[f].family for f in ("sd1", "sd2", "sdxl")] == ["sd1", "sd2", "sdxl"]
    assert got["sd2"].prediction_type == "v_prediction" and got["sd1"].prediction_type == "epsilon"
    assert got["sdxl"].pipeline_class == "StableDiffusionXLPipeline"
    assert got["sdxl"].context_dim == 96  # 32 (CLIP ViT-L-shaped) + 64 (bigG-shaped)
    for f, pipe in pipes.items():
        assert family_of(pipe) == f
        assert type(pipe.scheduler).__name__ == "DDIMScheduler"
        assert pipe.scheduler.config.prediction_type == got[f].prediction_type  # the family's own DDIM config
        assert pipe.scheduler.config.timestep_spacing == "leading" and pipe.scheduler.config.steps_offset == 1


def test_cross_attention_kv_count_per_family(pipes):
    counts = {f: len(cross_attention_kv(p.unet)) for f, p in pipes.items()}
    assert counts == {"sd1": 32, "sd2": 32, "sdxl": 140}  # SDXL: depths 1/2/10 down, 10 mid, 10/2 up → 70 attn2
    for p in pipes.values():  # one context width per model: every K/V reads the same vector, so one shared R
        assert {lin.in_features for _, lin in cross_attention_kv(p.unet)} == {context_dim(p)}


def test_unsupported_family_is_a_config_error_naming_what_could_apply(tmp_path, folders):
    sd3 = tmp_path / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(ConfigError) as err:
        detect_family(sd3)
    assert "SD3" in str(err.value) and "esd" in str(err.value) and "not support" in str(err.value)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"output_dir": str(tmp_path / "o"), "technique": {"name": "mace", "config": {
        "model_id": str(sd3), "erase_concept": "cat", "device": "cpu"}}, "metric": {"name": "asr_custom", "config": {
            "prompts": ["a cat"], "concept": "circle", "detector": "toy_judge"}}}))
    assert main(["run", str(cfg), "--no-progress"]) == 2


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_context_is_what_the_pipeline_conditions_on(pipes, family):
    """Our context (what the closed-form editors read) equals the pipeline's own prompt embeddings;
    for SDXL: both encoders' penultimate states concatenated, with the tokenizers aligned."""
    pipe = pipes[family]
    _, ours = encode_context(pipe, PROMPTS)
    if family == "sdxl":
        theirs = pipe.encode_prompt(prompt=PROMPTS, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)[0]
        for p in PROMPTS:  # one vocabulary: same ids at every word position, only the padding token differs
            assert pipe.tokenizer(p).input_ids == pipe.tokenizer_2(p).input_ids
        assert pipe.tokenizer.pad_token != pipe.tokenizer_2.pad_token
        h1 = pipe.text_encoder(pipe.tokenizer(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids,
                               output_hidden_states=True).hidden_states[-2]
        assert torch.equal(ours[..., : h1.shape[-1]], h1)  # the first 32 dims are ViT-L's penultimate layer
    else:
        theirs = pipe.encode_prompt(PROMPTS, "cpu", 1, False)[0]
    assert ours.shape == (len(PROMPTS), 77, context_dim(pipe))
    assert torch.equal(ours, theirs)


def test_mace_shared_r_on_sdxl_equals_the_per_layer_reference_solve(pipes):
    """140 K/V layers edited with one R (2048-d-shaped context) vs an independent float64 solve per layer."""
    pipe = pipes["sdxl"]
    layers = cross_attention_kv(pipe.unet)
    base = [lin.weight.detach().clone() for _, lin in layers]
    cfg = MACEConfig(model_id="unused", erase_concept=["cat", "kitten"], device="cpu", lambda_cfr=0.1)
    blocks = config_rows(encode_plan(pipe, build_plan(cfg, resolve_prior(cfg)[0])), cfg)
    x = torch.cat([b.x for b in blocks])
    y = torch.cat([b.x if b.y is None else b.y for b in blocks])
    w = torch.cat([torch.full((b.x.shape[0],), float(b.weight)) for b in blocks])
    ref = reference_refine(base, x, y, w, cfg.lambda_cfr)
    try:
        details = MACE(cfg).apply(pipe)
        ours = [lin.weight.detach().double() for _, lin in layers]
        rel = max(float((o - r).abs().max() / r.abs().max()) for o, r in zip(ours, ref, strict=True))
        moved = max(float((o - b.double()).abs().max()) for o, b in zip(ours, base, strict=True))
    finally:
        with torch.no_grad():
            for (_, lin), b in zip(layers, base, strict=True):
                lin.weight.copy_(b)
    assert len(layers) == 140 and details["edit_ran"]
    assert moved > 1e-4  # the edit did something
    assert rel <= 1e-4, rel


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_engine_images_are_the_plain_pipeline_images(pipes, family, tmp_path):
    """Generation through erasekit is the family's own pipeline call: SD 2.x's v-prediction DDIM,
    SDXL's zero negative and size ids (same seeds → identical pixels)."""
    import numpy as np

    from erasekit.generation import ImageCache, ImageGenerator, ImageRequest, sampler_settings

    pipe = pipes[family]
    s = sampler_settings(pipe, 3, 6.0, 64, 64, batch_size=2)
    assert s.family == family
    reqs = [ImageRequest(prompt="a cat", seed=3), ImageRequest(prompt="a dog", seed=4)]
    images, _ = ImageGenerator(pipe, "fp", s, ImageCache(tmp_path), batch_size=2, show_progress=False).generate(reqs)
    gens = [torch.Generator("cpu").manual_seed(r.seed) for r in reqs]
    plain = pipe(prompt=[r.prompt for r in reqs], num_inference_steps=3, guidance_scale=6.0, height=64, width=64,
                 generator=gens, output_type="pil").images
    for img, ref in zip(images, plain, strict=True):
        assert np.array_equal(np.asarray(img.image), np.asarray(ref))
    key_sd1 = ImageCache.key("fp", reqs[0], SimpleNamespace(**{**s.__dict__, "family": "sd1"}), 0)
    assert images[0].key != key_sd1  # the family is part of the key


def test_sdxl_conditioning_carries_pooled_text_and_size_ids(pipes):
    pipe = pipes["sdxl"]
    cond, uncond = encode_condition(pipe, ["a cat", "a dog"], height=64, width=48, guidance=True)
    assert cond.hidden.shape == (2, 77, 96) and cond.pooled.shape == (2, 32)
    assert cond.time_ids.tolist() == [[64, 48, 0, 0, 64, 48]] * 2
    assert torch.count_nonzero(uncond.hidden) == 0 and torch.count_nonzero(uncond.pooled) == 0  # force_zeros_for_empty_prompt


def _run(tmp_path: Path, folder: Path, technique: str, extra: dict | None = None) -> dict:
    cfg = {
        "output_dir": str(tmp_path / f"out_{technique}"),
        "cache_dir": str(tmp_path / "cache"),
        "batch_size": 2,
        "technique": {"name": technique, "config": {"model_id": str(folder), "device": "cpu", "num_inference_steps": 3,
                                                     **({"erase_concept": "cat"} if technique != "none" else {}), **(extra or {})}},
        "metrics": [
            {"name": "asr_custom", "config": {"prompts": ["a cat", "a photo of a cat"], "concept": "circle", "detector": "toy_judge"}},
            {"name": "clip_score", "config": {"captions_path": str(tmp_path / "caps.csv"), "clip_model": "toy", "limit": 2}},
        ],
    }
    path = tmp_path / f"{technique}.json"
    path.write_text(json.dumps(cfg))
    code = main(["run", str(path), "--no-progress"])
    report = json.loads((tmp_path / f"out_{technique}" / "report.json").read_text())
    assert code == 0, report
    return report


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_erasekit_run_end_to_end_with_mace_uce_and_none(folders, family, tmp_path):
    (tmp_path / "caps.csv").write_text("caption\na cat on a sofa\na red car\n")
    n_kv = {"sd2": 32, "sdxl": 140}[family]
    reports = {t: _run(tmp_path, folders[family], t, {"save_path": str(tmp_path / f"{t}.pt")} if t != "none" else None)
               for t in ("none", "mace", "uce")}
    base_unet = load_file(str(folders[family] / "unet" / "diffusion_pytorch_model.safetensors"))
    for t, rep in reports.items():
        assert rep["status"] == "ok" and rep["model"]["family"] == family and rep["sampler"]["family"] == family
        assert all(m["status"] == "ok" for m in rep["metrics"].values())
        assert rep["images"]["generated"] == 4  # 2 asr_custom + 2 clip_score images: nothing shared across models
        if t == "none":
            continue
        edited = torch.load(tmp_path / f"{t}.pt", weights_only=True)
        changed = sorted(k for k, v in edited.items() if not torch.equal(v, base_unet[k]))
        assert len(changed) == n_kv, (t, len(changed))
        assert all(k.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for k in changed)  # exactly the cross-attention K/V
        assert rep["model"]["fingerprint"] != reports["none"]["model"]["fingerprint"]


def _attack_config(tmp_path: Path, folder: Path, metric: str, attack: dict) -> Path:
    cfg = tmp_path / f"{metric}.json"
    cfg.write_text(json.dumps({"output_dir": str(tmp_path / metric), "cache_dir": str(tmp_path / "cache"), "batch_size": 2,
                               "technique": {"name": "mace", "config": {"model_id": str(folder), "erase_concept": "cat",
                                                                        "device": "cpu", "num_inference_steps": 3}},
                               "metric": {"name": metric, "config": {"prompts": ["a cat"], "concept": "circle",
                                                                     "detector": "toy_judge", "attack": attack}}}))
    return cfg


def test_attacks_run_on_the_sdxl_joint_context_and_p4d_is_refused_before_loading(folders, pipes, tmp_path):
    from erasekit.attacks.ring_a_bell import encode_full
    from erasekit.models.conditioning import context_encoder

    pipe = pipes["sdxl"]
    joint = context_encoder(pipe)
    assert torch.equal(encode_full(joint, pipe.tokenizer, PROMPTS), encode_context(pipe, PROMPTS)[1])  # what the UNet reads
    for metric, attack in (("asr_ring_a_bell", {"generations": 2, "population": 6, "n_tokens": 4}),
                           ("mma_diffusion", {"steps": 2, "topk": 4, "batch_size": 4, "n_tokens": 4}),
                           ("asr_unlearndiffatk", {"timesteps": 2, "steps_per_timestep": 2, "n_tokens": 3})):
        assert main(["run", str(_attack_config(tmp_path, folders["sdxl"], metric, attack)), "--no-progress"]) == 0
        report = json.loads((tmp_path / metric / "report.json").read_text())
        assert report["metrics"][metric]["status"] == "ok", report["metrics"][metric]
    for metric, attack in (("asr_p4d", {"iterations": 2}),):
        assert main(["run", str(_attack_config(tmp_path, folders["sdxl"], metric, attack)), "--no-progress"]) == 2
        assert not (tmp_path / metric / "report.json").exists()  # refused before anything ran


def test_mma_gradient_on_sdxl_flows_through_both_encoders(pipes, monkeypatch):
    """The GCG token gradient is the sum of the two encoders' parts (one one-hot spliced into both tables)."""
    import erasekit.attacks.mma as mma
    from erasekit.attacks.settings import AttackSettings
    from erasekit.models.conditioning import context_encoder

    pipe = pipes["sdxl"]
    attack = mma.MMAAttack(context_encoder(pipe), pipe.tokenizer, settings=AttackSettings(n_tokens=3, steps=1, topk=4, batch_size=4))
    goal = attack.target_embedding("a photo of a cat")
    assert goal.shape == (32 + 32,)  # ViT-L pooled ⊕ bigG text_embeds (tiny widths)
    cur = torch.tensor([320, 2368, 530])
    full = attack.gradient(cur, goal)
    assert attack.last_loss == pytest.approx(float(attack.losses(cur[None], goal)[0]), abs=1e-5)
    tables = mma.embedding_layers(attack.te)
    parts = []
    for keep in tables:
        monkeypatch.setattr(mma, "embedding_layers", lambda _te, keep=keep: [keep])
        parts.append(attack.gradient(cur, goal))
    assert torch.allclose(full, parts[0] + parts[1], atol=1e-6)
    assert float(parts[1].abs().max()) > 1e-4  # the second encoder really contributes


def test_ring_a_bell_individuals_pad_like_the_tokenizer(pipes):
    """SD 2.x's OpenCLIP tokenizer pads with "!": an individual is BOS, its tokens, EOS, then "!" (SD 1.x: EOS)."""
    from erasekit.attacks.ring_a_bell import RingABellAttack
    from erasekit.attacks.settings import RingABellSettings

    for family, pad in (("sd1", 49407), ("sd2", 0)):
        pipe = pipes[family]
        attack = RingABellAttack(pipe.text_encoder, pipe.tokenizer, "cat", settings=RingABellSettings(n_tokens=3))
        row = attack._ids(torch.tensor([[320, 2368, 530]]))[0].tolist()
        assert row[:5] == [49406, 320, 2368, 530, 49407] and set(row[5:]) == {pad}
        text = pipe.tokenizer.decode([320, 2368, 530])
        assert row == pipe.tokenizer(text, padding="max_length", max_length=77).input_ids  # as generation will encode it


def test_esd_loss_on_sdxl_reads_pooled_text_and_size_ids(pipes):
    """ESD's loss on the SDXL shape equals the official formula with the UNet conditioned as the pipeline does."""
    import copy

    from erasekit.techniques.esd import esd_loss

    pipe = pipes["sdxl"]
    frozen = pipe.unet
    trained = copy.deepcopy(frozen)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    c, _ = encode_condition(pipe, ["a cat"], height=64, width=64)
    e, _ = encode_condition(pipe, [""], height=64, width=64)
    z = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([437])
    ours = esd_loss(trained, frozen, z, t, c, e, 1.5).detach()

    def out(unet, cond):
        added = {"text_embeds": cond.pooled, "time_ids": cond.time_ids}
        return unet(z, t, encoder_hidden_states=cond.hidden, added_cond_kwargs=added).sample.double()

    with torch.no_grad():
        e_0, e_p, e_n = out(frozen, e), out(frozen, c), out(trained, c)
    ref = ((e_n - (e_0 - 1.5 * (e_p - e_0))) ** 2).mean()
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    assert not torch.equal(c.pooled, e.pooled)  # the pooled text really differs between the two prompts


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_esd_trains_and_sld_guides_on_the_family(folders, family):
    """ESD-x moves only cross-attention weights; SLD without safety guidance (warm-up past the last step) is the
    plain pipeline, so its own sampling loop conditions like the family's pipeline; with it, images change.

    SLD runs the UNet on a batch of 3 per image instead of 2, and in float32 the plain SD-2.x-shaped pipeline
    itself moves pixels by up to 5e-3 (of 1) between batch sizes 2 and 3 (measured, random weights); so the
    comparison runs in float64, where that noise vanishes and any conditioning difference would not."""
    import numpy as np

    from erasekit.techniques.esd import ESD, ESDConfig
    from erasekit.techniques.sld import SLD, SLDConfig

    pipe = load_pipeline_folder(folders[family])
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    details = ESD(ESDConfig(model_id=str(folders[family]), erase_concept="cat", device="cpu", iterations=2, ddim_steps=3,
                            lr=1e-3)).apply(pipe)
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert details["iterations"] == 2 and changed and all("attn2" in k for k in changed)

    pipe = load_pipeline_folder(folders[family], dtype=torch.float64)
    kw = {"steps": 3, "guidance": 6.0, "height": 64, "width": 64}

    def images(hooked):
        from erasekit.generation.sampling import sample

        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        return np.stack(sample(hooked, ["a cat", "a dog"], ["", ""], generators=gens, output_type="np", **kw))

    plain = images(pipe)
    SLD(SLDConfig(model_id="x", erase_concept="cat", device="cpu", sld_warmup_steps=10)).apply(pipe)
    assert float(np.abs(images(pipe) - plain).max()) <= 1e-6
    pipe = load_pipeline_folder(folders[family], dtype=torch.float64)
    SLD(SLDConfig(model_id="x", erase_concept="cat", device="cpu", sld_config="max")).apply(pipe)
    assert float(np.abs(images(pipe) - plain).max()) > 0.05


def test_unlearndiffatk_loss_targets_the_velocity_on_v_prediction(pipes):
    from erasekit.attacks.unlearndiffatk import unlearndiff_loss

    pipe = pipes["sd2"]
    ac = pipe.scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn((1, 4, 8, 8), generator=g), torch.randn((1, 4, 8, 8), generator=g)
    cond = encode_condition(pipe, ["a cat"], height=64, width=64)[0].hidden
    t = 610
    a = ac[t].double()
    x = a.sqrt() * z0.double() + (1 - a).sqrt() * noise.double()
    with torch.no_grad():
        pred = pipe.unet(x.float(), torch.tensor([t]), encoder_hidden_states=cond).sample.double()
    v = a.sqrt() * noise.double() - (1 - a).sqrt() * z0.double()
    with torch.no_grad():
        assert float(unlearndiff_loss(pipe.unet, z0, noise, t, ac, cond, "v_prediction")) == pytest.approx(
            float(((pred - v) ** 2).mean()), rel=1e-5)
        assert float(unlearndiff_loss(pipe.unet, z0, noise, t, ac, cond)) == pytest.approx(
            float(((pred - noise.double()) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("name,expected", [("rece", 140), ("speed", 70)])
def test_rece_and_speed_edit_the_sdxl_cross_attention(folders, name, expected):
    """RECE edits every K/V on the 2048-d-shaped context; SPEED (params V) every to_v, per layer."""
    from erasekit.registry import TECHNIQUES, load_builtins

    load_builtins()
    pipe = load_pipeline_folder(folders["sdxl"])
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    cls = TECHNIQUES.get(name)
    cls(cls.Config(model_id=str(folders["sdxl"]), erase_concept="cat", device="cpu")).apply(pipe)
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == expected and all(k.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for k in changed)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_unlearndiffatk_conditions_the_unet_as_the_pipeline_encodes_its_prompt(pipes, family):
    """Spliced one-hot tokens (both encoders on SDXL, the tokenizer's own padding) give exactly the
    conditioning the pipeline computes for the decoded adversarial prompt: the attack optimises what is judged."""
    from erasekit.attacks.settings import UnlearnDiffAtkSettings
    from erasekit.attacks.tokens import encode_spliced_tokens
    from erasekit.attacks.unlearndiffatk import UnlearnDiffAtk

    pipe = pipes[family]
    attack = UnlearnDiffAtk(pipe, "fp", lambda _t: torch.zeros(1, 4, 8, 8), {}, settings=UnlearnDiffAtkSettings(n_tokens=2))
    adv = pipe.tokenizer("red dog", add_special_tokens=False).input_ids
    one_hot = torch.zeros(2, len(pipe.tokenizer))
    one_hot[0, adv[0]], one_hot[1, adv[1]] = 1.0, 1.0
    with torch.no_grad():
        ours = attack.condition(encode_spliced_tokens(attack.te, attack.template("a cat"), [1, 2], one_hot[None]), (64, 64))
    ref, _ = encode_condition(pipe, [attack.adversarial_prompt(adv, "a cat")], height=64, width=64)
    assert attack.adversarial_prompt(adv, "a cat") == "red dog a cat"
    assert torch.allclose(ours.hidden, ref.hidden, atol=1e-5)
    if family == "sdxl":
        assert torch.allclose(ours.pooled, ref.pooled, atol=1e-5) and torch.equal(ours.time_ids, ref.time_ids)
