"""The contract every weight-editing technique shares (mace, uce, rece, speed), on a tiny random SD-shaped pipeline.

Checkpoints (save/load round trip, atomic save, code-executing pickles refused,
another architecture refused), what is edited, determinism, fingerprints that
follow every field that changes the weights, and config errors that name the field.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from erasekit.config import resolve_config
from erasekit.errors import ConfigError, TechniqueError
from erasekit.models.loading import load_base_pipeline
from erasekit.registry import TECHNIQUES, load_builtins
from erasekit.techniques.checkpoint import sidecar_path
from erasekit.techniques.closed_form import cross_attention_kv

load_builtins()

EDITORS = ["mace", "uce", "rece", "speed"]

# A field per technique whose change must change the weights, with the value it changes to.
WEIGHT_FIELDS: dict[str, list[tuple[str, object]]] = {
    "mace": [("lambda_cfr", 5.0), ("erase_from", "shape"), ("overshoot", 1.0)],
    "uce": [("lamb", 2.0), ("guide_concept", "shape"), ("erase_scale", 3.0), ("preserve_concepts", ["square"]),
            ("expand_prompts", True), ("token_rule", "last_token_to_end"), ("templates", ["a {}"])],
    "rece": [("rounds", 1), ("regular_scale", 1.0), ("round_lamb", 1.0), ("lamb", 2.0), ("guide_concept", "shape"),
             ("round_preserve_scale", 1.0), ("preserve_concepts", ["square"])],
    "speed": [("threshold", 0.5), ("retain_scale", 0.3), ("params", "KV"), ("guide_concept", "shape"), ("seed", 1),
              ("aug_num", 0), ("lamb", 0.5), ("token_rule", "all_tokens")],
}


def _cls(name: str):
    return TECHNIQUES.get(name)


def _cfg(name: str, model_dir: Path, **kw):
    base = {"erase_concept": "circle", "model_id": str(model_dir), "device": "cpu", "use_fp16": False}
    base.update(kw)
    return _cls(name).Config(**base)


def _kv(pipe) -> dict[str, torch.Tensor]:
    return {n: lin.weight.detach().clone() for n, lin in cross_attention_kv(pipe.unet)}


def _images(pipe) -> np.ndarray:
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    return pipe(["a red circle", "a green square"], num_inference_steps=2, guidance_scale=4.0, generator=gens,
                output_type="np", height=16, width=16).images


@pytest.fixture
def pipe(tiny_sd_dir: Path):
    return load_base_pipeline(str(tiny_sd_dir), "cpu", False)


def test_registry_lists_the_closed_form_family():
    assert set(EDITORS) <= set(TECHNIQUES.names())


@pytest.mark.parametrize("name", EDITORS)
def test_edits_exactly_the_cross_attention_projections_deterministically(name, tiny_sd_dir, pipe):
    state0 = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    details = _cls(name)(_cfg(name, tiny_sd_dir)).apply(pipe)
    changed = {k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, state0[k])}
    kv = {f"{n}.weight" for n, _ in cross_attention_kv(pipe.unet)}
    expected = {k for k in kv if ".to_v." in k} if name == "speed" else kv  # SPEED's official default edits values only
    assert changed == expected and details["layers_edited"] == len(expected) and details["edit_ran"]
    again = load_base_pipeline(str(tiny_sd_dir), "cpu", False)
    _cls(name)(_cfg(name, tiny_sd_dir)).apply(again)
    assert all(torch.equal(v, again.unet.state_dict()[k]) for k, v in pipe.unet.state_dict().items())  # bit-identical


@pytest.mark.parametrize(("name", "field", "value"), [(n, f, v) for n, fs in WEIGHT_FIELDS.items() for f, v in fs])
def test_every_field_that_changes_the_weights_changes_the_fingerprint(name, field, value, tiny_sd_dir):
    a, b = _cfg(name, tiny_sd_dir), _cfg(name, tiny_sd_dir, **{field: value})
    pa, pb = load_base_pipeline(str(tiny_sd_dir), "cpu", False), load_base_pipeline(str(tiny_sd_dir), "cpu", False)
    _cls(name)(a).apply(pa)
    _cls(name)(b).apply(pb)
    assert any(not torch.equal(x, _kv(pb)[k]) for k, x in _kv(pa).items()), f"{field} did not change the weights"
    assert _cls(name)(a).fingerprint("base", name) != _cls(name)(b).fingerprint("base", name)
    # where the file goes is not what the weights are
    assert _cls(name)(_cfg(name, tiny_sd_dir, save_path="x.pt")).fingerprint("base", name) == _cls(name)(a).fingerprint("base", name)


@pytest.mark.parametrize("name", EDITORS)
def test_save_load_round_trip_skips_the_edit(name, tmp_path, tiny_sd_dir, monkeypatch):
    ck = tmp_path / "ck" / f"{name}.pt"
    p1 = load_base_pipeline(str(tiny_sd_dir), "cpu", False)
    saver = _cls(name)(_cfg(name, tiny_sd_dir, save_path=str(ck)))
    d1 = saver.apply(p1)
    assert d1["saved_path"] == str(ck)
    assert sorted(f.name for f in ck.parent.iterdir()) == [f"{name}.pt", f"{name}.pt.json"]  # no temp files left
    meta = json.loads(sidecar_path(ck).read_text())
    assert meta["technique"] == name and meta["format"] == f"erasekit.{name}.checkpoint/1"
    assert meta["config"]["erase_concept"] == "circle" and len(meta["checkpoint_sha256"]) == 64 and meta["base_fingerprint"]
    img1 = _images(p1)

    def boom(*a, **k):
        raise AssertionError("the edit ran although load_path is set")

    monkeypatch.setattr(_cls(name), "edit", boom)
    p2 = load_base_pipeline(str(tiny_sd_dir), "cpu", False)
    loader = _cls(name)(_cfg(name, tiny_sd_dir, load_path=str(ck)))
    d2 = loader.apply(p2)
    assert d2["edit_ran"] is False and d2["loaded_from"] == str(ck) and d2["warnings"] == []
    assert all(torch.equal(v, p2.unet.state_dict()[k]) for k, v in p1.unet.state_dict().items())
    assert np.array_equal(img1, _images(p2))
    assert loader.fingerprint("b", name) == saver.fingerprint("b", name)  # verified sidecar: the same model, shared cache
    sd = torch.load(ck, weights_only=True)
    k0 = next(iter(sd))
    sd[k0] = sd[k0] + 1
    torch.save(sd, ck)
    assert _cls(name)(_cfg(name, tiny_sd_dir, load_path=str(ck))).fingerprint("b", name) != saver.fingerprint("b", name)


@pytest.mark.parametrize("name", EDITORS)
def test_save_is_atomic(name, tmp_path, tiny_sd_dir, monkeypatch):
    ck = tmp_path / f"{name}.pt"
    p = load_base_pipeline(str(tiny_sd_dir), "cpu", False)

    def half_write(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError):
        _cls(name)(_cfg(name, tiny_sd_dir, save_path=str(ck))).apply(p)
    assert list(tmp_path.iterdir()) == []  # neither the checkpoint nor a temp file


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("fmt", ["torch_zip", "raw_pickle"])
@pytest.mark.parametrize("name", EDITORS)
def test_code_executing_pickle_is_refused_without_running(name, fmt, tmp_path, tiny_sd_dir, pipe):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    if fmt == "torch_zip":
        torch.save({"conv_in.weight": _Evil(marker)}, bad)
    else:
        bad.write_bytes(pickle.dumps({"conv_in.weight": _Evil(marker)}))
    before = _kv(pipe)
    with pytest.raises(TechniqueError) as e:
        _cls(name)(_cfg(name, tiny_sd_dir, load_path=str(bad))).apply(pipe)
    assert "weights_only" in str(e.value)
    assert not marker.exists()
    assert all(torch.equal(v, _kv(pipe)[k]) for k, v in before.items())


@pytest.mark.parametrize("name", EDITORS)
def test_checkpoint_of_another_architecture_is_a_clear_error(name, tmp_path, tiny_sd_dir, pipe):
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                 cross_attention_dim=48, attention_head_dim=4, norm_num_groups=8)
    ck = tmp_path / "other.pt"
    torch.save(other.state_dict(), ck)
    with pytest.raises(TechniqueError, match="different architecture") as e:
        _cls(name)(_cfg(name, tiny_sd_dir, load_path=str(ck))).apply(pipe)
    assert "shape" in str(e.value) and e.value.args[0].startswith(_cls(name).label)
    torch.save({k: v for k, v in pipe.unet.state_dict().items() if "mid_block" not in k}, ck)
    with pytest.raises(TechniqueError, match="missing keys"):
        _cls(name)(_cfg(name, tiny_sd_dir, load_path=str(ck))).apply(pipe)


def test_loading_another_techniques_checkpoint_warns(tmp_path, tiny_sd_dir):
    ck = tmp_path / "uce.pt"
    _cls("uce")(_cfg("uce", tiny_sd_dir, save_path=str(ck))).apply(load_base_pipeline(str(tiny_sd_dir), "cpu", False))
    d = _cls("rece")(_cfg("rece", tiny_sd_dir, load_path=str(ck))).apply(load_base_pipeline(str(tiny_sd_dir), "cpu", False))
    assert any("saved by technique 'uce'" in w for w in d["warnings"])


def _run_cfg(tmp_path: Path, name: str, tech: dict) -> dict:
    return {"output_dir": str(tmp_path / "out"), "technique": {"name": name, "config": tech},
            "metric": {"name": "clip_score", "config": {"device": "cpu"}}}


@pytest.mark.parametrize(
    ("name", "tech", "path"),
    [
        ("uce", {"erase_concept": ["circle", "disc"], "guide_concept": ["a", "b", "c"]}, "technique.config.guide_concept"),
        ("uce", {"erase_concept": "circle", "lamb": 0}, "technique.config.lamb"),
        ("uce", {"erase_concept": "circle", "token_rule": "middle"}, "technique.config.token_rule"),
        ("uce", {"erase_concept": "circle", "templates": ["no braces"]}, "technique.config.templates"),
        ("uce", {"erase_concept": "circle", "concept_type": "unsafe"}, "technique.config.concept_type"),
        ("uce", {"erase_concept": ""}, "technique.config.erase_concept"),
        ("rece", {"erase_concept": "circle", "rounds": -1}, "technique.config.rounds"),
        ("rece", {"erase_concept": "circle", "regular_scale": 0}, "technique.config.regular_scale"),
        ("rece", {"erase_concept": "circle", "load_path": "/nonexistent/m.pt"}, "technique.config.load_path"),
        ("speed", {"erase_concept": "circle", "params": "Q"}, "technique.config.params"),
        ("speed", {"erase_concept": "circle", "prior_captions": "/nonexistent/retain.csv"}, "technique.config.prior_captions"),
        ("speed", {"erase_concept": "circle", "threshold": 0}, "technique.config.threshold"),
        ("speed", {"erase_concept": ["circle", "disc"], "anchor_concept": ["a", "b", "c"]}, "technique.config.guide_concept"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(name, tech, path, tmp_path):
    with pytest.raises(ConfigError) as e:
        resolve_config(_run_cfg(tmp_path, name, tech))
    assert e.value.path.startswith(path), str(e.value)


def test_speed_retain_csv_needs_its_column_and_drops_texts_naming_the_concept(tmp_path, tiny_sd_dir):
    from erasekit.techniques.speed import filter_retain, read_retain

    f = tmp_path / "retain.csv"
    f.write_text("name\nsquare\n")
    with pytest.raises(ConfigError) as e:
        resolve_config(_run_cfg(tmp_path, "speed", {"erase_concept": "circle", "prior_captions": str(f)}))
    assert e.value.path == "technique.config.prior_captions" and "concept" in str(e.value)
    f.write_text("concept,other\nsquare,x\na red circle,y\nsquare,z\ncircles,w\n")
    texts, label = read_retain(_cfg("speed", tiny_sd_dir, prior_captions=str(f)))
    assert texts == ["square", "a red circle", "circles"] and label.startswith("file:")
    assert filter_retain(texts, ["circle"]) == ["square", "circles"]  # whole words only, as the official regex
    f.write_text("concept\ncircle\na circle\n")
    with pytest.raises(ConfigError, match="no retain text is left"):
        resolve_config(_run_cfg(tmp_path, "speed", {"erase_concept": "circle", "prior_captions": str(f)}))
