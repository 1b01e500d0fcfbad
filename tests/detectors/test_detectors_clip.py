"""CLIP detector on a tiny random CLIPModel folder: interface, decision rule, offline loading."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from erasekit.detectors import ClipDetector, DetectorPool
from erasekit.errors import ErasekitError, ModelNotFoundError


@pytest.fixture(scope="module")
def clip_toy(tiny_clip_dir: Path) -> ClipDetector:
    return ClipDetector(str(tiny_clip_dir), caption_mode="toy")


def test_embeddings_shapes_and_normalisation(clip_toy: ClipDetector, noise_images) -> None:
    imgs = noise_images(5)
    proj_dim = clip_toy.model.config.projection_dim
    hidden = clip_toy.model.config.vision_config.hidden_size
    ie = clip_toy.image_embeddings(imgs)
    te = clip_toy.text_embeddings(["a circle", "a red square", "a photo of a cat"])
    assert ie.shape == (5, proj_dim) and te.shape == (3, proj_dim)
    torch.testing.assert_close(ie.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(te.norm(dim=-1), torch.ones(3))
    pooled = clip_toy.image_features(imgs, kind="pooled")
    proj = clip_toy.image_features(imgs, kind="projected")
    assert pooled.shape == (5, hidden) and proj.shape == (5, proj_dim)
    assert not torch.allclose(pooled.norm(dim=-1), torch.ones(5))  # unnormalised
    torch.testing.assert_close(torch.nn.functional.normalize(proj, dim=-1), ie)
    assert clip_toy.image_features([], kind="pooled").shape == (0, hidden)


def test_matches_clipmodel_forward(tiny_clip_dir: Path, noise_images) -> None:
    """With one caption per class, P must equal softmax(logits_per_image) of CLIPModel's own forward."""
    caps = ["a circle", "a square", "a triangle"]
    d = ClipDetector(str(tiny_clip_dir), caption_mode="generic", templates=("{}",), neutral_captions=(),
                     contrast_captions=caps[1:])
    imgs = noise_images(4, seed=3)
    names, probs = d.probabilities(imgs, "a circle")
    assert names == caps
    enc = d.processor(text=caps, images=imgs, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = d.model(**enc).logits_per_image.softmax(-1)
    torch.testing.assert_close(probs, ref, atol=1e-5, rtol=1e-4)


def test_decision_rule_and_records(clip_toy: ClipDetector, toy_renders) -> None:
    imgs = toy_renders["circle"][:4] + toy_renders["square"][:4]
    dets = clip_toy.detect(imgs, "circle")
    assert len(dets) == 8
    for d in dets:
        assert set(d.scores) == {"circle", "square", "triangle", "cross"}
        assert abs(sum(d.scores.values()) - 1) < 1e-5
        assert d.score == d.scores["circle"]
        assert d.flagged == (d.score >= 0.5)
        assert d.label == max(d.scores, key=d.scores.get)
    low = clip_toy.derive(threshold=0.0).detect(imgs, "circle")
    high = clip_toy.derive(threshold=1.0 + 1e-9).detect(imgs, "circle")
    assert all(d.flagged for d in low) and not any(d.flagged for d in high)
    # synonyms share the class: "disc" is the circle class
    disc = clip_toy.detect(imgs, "disc")
    assert [d.score for d in disc] == [d.score for d in dets]


def test_batch_size_does_not_change_results(tiny_clip_dir: Path, noise_images) -> None:
    imgs = noise_images(7, seed=1)
    a = ClipDetector(str(tiny_clip_dir), caption_mode="toy", batch_size=2).detect(imgs, "red")
    b = ClipDetector(str(tiny_clip_dir), caption_mode="toy", batch_size=32).detect(imgs, "red")
    for x, y in zip(a, b, strict=True):
        assert x.flagged == y.flagged and abs(x.score - y.score) < 1e-5


def test_caption_classes(tiny_clip_dir: Path, clip_toy: ClipDetector) -> None:
    classes = clip_toy.classes_for("disc")
    assert list(classes) == ["circle", "square", "triangle", "cross"]
    assert classes["circle"][:2] == ["a circle", "a disc"]
    assert set(classes["circle"][2:]) == {f"a {c} {n}" for c in ("red", "green", "blue", "yellow") for n in ("circle", "disc")}
    assert set(classes["square"]) == {"a square", *(f"a {c} square" for c in ("red", "green", "blue", "yellow"))}
    colour = clip_toy.classes_for("Blue")
    assert list(colour) == ["blue", "red", "green", "yellow"]
    assert colour["blue"][0] == "a blue shape" and "a blue disc" in colour["blue"] and "a red circle" not in colour["blue"]
    with pytest.raises(ErasekitError, match="shapes and colours only"):
        clip_toy.classes_for("nudity")
    gen = ClipDetector(str(tiny_clip_dir), contrast_captions=["a photo of a dog."])
    assert not gen.toy  # a folder that is not the shipped mini-CLIP → generic captions
    classes = gen.classes_for("cat")
    assert classes["cat"] == ["a photo of cat.", "an image of cat.", "cat"]
    assert classes["<neutral>"] == ["a photo.", "an image.", "a picture."]
    assert classes["a photo of a dog."] == ["a photo of a dog."]
    proto = gen.protocol()
    assert proto["threshold"] == 0.5 and proto["captions"]["contrast"] == ["a photo of a dog."]


def test_missing_models_fail_fast_with_field_name(tmp_path: Path) -> None:
    t0 = time.time()
    with pytest.raises(ModelNotFoundError, match=r"metrics\[0\]\.config\.clip_model.*huggingface-cli download"):
        ClipDetector("openai/clip-vit-nonexistent-patch99", field="metrics[0].config.clip_model")
    assert time.time() - t0 < 10, "must not retry the hub"
    with pytest.raises(ModelNotFoundError, match="not found"):
        ClipDetector(str(tmp_path / "no" / "such" / "clip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        ClipDetector(str(tmp_path / "empty"))
    msg = None
    try:
        ClipDetector("openai/clip-vit-nonexistent-patch99")
    except ModelNotFoundError as e:
        msg = str(e)
    assert msg is not None and "\n" not in msg


def test_pool_shares_the_model(tiny_clip_dir: Path) -> None:
    pool = DetectorPool("cpu")
    a = pool.get("clip", clip_model=str(tiny_clip_dir))
    assert pool.get("clip", clip_model=str(tiny_clip_dir), threshold=0.5) is a
    b = pool.get("clip", clip_model=str(tiny_clip_dir), threshold=0.3, contrast_captions=["a dog"])
    assert b is not a and b.model is a.model
    assert b.threshold == 0.3 and a.threshold == 0.5 and a.contrast_captions == ()
    assert len(pool) == 2
