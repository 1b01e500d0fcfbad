"""clip_score: equal to torchmetrics' CLIPScore per image on the same (tiny, random) CLIP model,
the MACE preset equal to CLIPModel's logits_per_image, records, and config validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.metric_harness import metric_for, run_config, serve, write_csv

from erasekit.errors import ConfigError

CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a cross", "a yellow shape", "a disc"]


@pytest.fixture(scope="module")
def renders() -> np.ndarray:
    from erasekit.toyworld import render_batch

    arr, _, _, _ = render_batch(len(CAPTIONS), seed=1)
    return arr


def _run(tmp: Path, clip: Path, arr: np.ndarray, **cfg):
    caps = write_csv(tmp / "caps.csv", ["prompt", "seed"], [[c, 10 + i] for i, c in enumerate(CAPTIONS)])
    run = run_config(tmp, "clip_score", {"captions_path": str(caps), "clip_model": str(clip), **cfg}, model_id="dummy/sd-model")
    metric = metric_for(run)
    reqs = metric.requests()
    images = serve(reqs, tmp / "imgs", lambda i, r: arr[i])
    return reqs, images, metric.compute(images)


class _TensorFeatures(torch.nn.Module):
    """transformers 5 returns an output object from get_*_features; torchmetrics 1.9 expects the tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.m = model
        self.config = model.config

    def get_image_features(self, *a, **k):
        out = self.m.get_image_features(*a, **k)
        return getattr(out, "pooler_output", out)

    def get_text_features(self, *a, **k):
        out = self.m.get_text_features(*a, **k)
        return getattr(out, "pooler_output", out)


def test_clip_score_equals_torchmetrics_per_image(tmp_path: Path, tiny_clip_dir: Path, renders: np.ndarray) -> None:
    from torchmetrics.multimodal.clip_score import CLIPScore

    from erasekit.detectors.clip import load_clip_model

    reqs, images, res = _run(tmp_path, tiny_clip_dir, renders, preset="standard")
    assert [r.prompt for r in reqs] == CAPTIONS and [r.seed for r in reqs] == [10 + i for i in range(6)]
    model, proc, _ = load_clip_model(str(tiny_clip_dir))
    tm = CLIPScore(model_name_or_path=lambda: (_TensorFeatures(model), proc))
    per_image = []
    for arr, cap in zip(renders, CAPTIONS, strict=True):
        tm.reset()
        tm.update(torch.from_numpy(arr).permute(2, 0, 1), cap)
        per_image.append(float(tm.compute()))  # = max(100 cos, 0) for one image
    ours = [r["clip_score"] for r in res.records]
    np.testing.assert_allclose(ours, per_image, atol=1e-3)
    assert res.value == pytest.approx(float(np.mean(per_image)), abs=1e-3)
    # torchmetrics' batch value clamps the mean instead; equal to our unclamped mean
    tm.reset()
    tm.update([torch.from_numpy(a).permute(2, 0, 1) for a in renders], CAPTIONS)
    assert res.details["mean_100cos_unclamped"] == pytest.approx(max(float(tm.compute()), 0.0), abs=1e-3)
    # this random model has negative cosines: the clamp is per image, and the report says so
    assert res.details["n_negative_cos"] == sum(r["cos"] < 0 for r in res.records) >= 1
    assert all(r["clip_score"] == 0.0 for r in res.records if r["cos"] < 0)
    assert res.details["preset"] == "standard" and res.details["clip_model"] == str(tiny_clip_dir)
    rec = res.records[0]
    assert rec["prompt"] == CAPTIONS[0] and rec["seed"] == 10 and rec["cache_key"] == images[0].key


def test_clip_score_mace_preset_is_logits_per_image(tmp_path: Path, tiny_clip_dir: Path, renders: np.ndarray) -> None:
    from PIL import Image

    from erasekit.detectors.clip import load_clip_model

    _, _, res = _run(tmp_path, tiny_clip_dir, renders, preset="mace")
    model, proc, _ = load_clip_model(str(tiny_clip_dir))
    inputs = proc(text=CAPTIONS, images=[Image.fromarray(a) for a in renders], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image.diagonal()
    assert res.value == pytest.approx(float(logits.mean()), abs=1e-3)  # no clamp, the model's own logit scale
    np.testing.assert_allclose([r["clip_score"] for r in res.records], logits.numpy(), atol=1e-3)
    assert res.details["preset"] == "mace" and res.details["logit_scale"] == pytest.approx(float(model.logit_scale.exp().detach()), rel=1e-4)


def test_clip_score_default_models_by_preset_and_world(tmp_path: Path) -> None:
    from support.metric_harness import make_ctx

    from erasekit.metrics.clip_score import DEFAULT_MODELS

    toy = make_ctx(run_config(tmp_path, "clip_score", {})).world
    real = make_ctx(run_config(tmp_path, "clip_score", {"captions_path": __file__}, model_id="dummy/sd-model")).world
    assert toy.clip_model(None, DEFAULT_MODELS["standard"]) == "toy"
    assert real.clip_model(None, DEFAULT_MODELS["standard"]) == "openai/clip-vit-large-patch14"
    assert real.clip_model(None, DEFAULT_MODELS["mace"]) == "openai/clip-vit-base-patch32"
    assert toy.clip_model("/some/clip", DEFAULT_MODELS["mace"]) == "/some/clip"


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"preset": "fancy"}, "preset"),
        ({"limit": 0}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"captions_path": "/nonexistent/c.csv"}, "captions_path"),
        ({"clip_model": "/nonexistent/clip"}, "clip_model"),
        ({"clip_model": ""}, "clip_model"),
        ({"captions": "x"}, "captions"),
    ],
)
def test_clip_score_config_validation(tmp_path: Path, cfg: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        run_config(tmp_path, "clip_score", cfg)
    assert exc.value.path == f"metric.config.{field}"


def test_clip_score_real_model_without_captions_is_a_clear_error(tmp_path: Path) -> None:
    run = run_config(tmp_path, "clip_score", {}, model_id="dummy/sd-model")
    with pytest.raises(ConfigError, match=r"metric\.config\.captions_path"):
        metric_for(run).requests()
