"""Model fingerprint → cache keys: a technique config change never shares images, a metric
config change always does (DESIGN.md §4/§6).

Keys are derived the way the runner derives them: resolve_config → technique fingerprint
over the base model's fingerprint → sampler settings from the normalised config →
ImageCache.key for a fixed request.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from erasekit.config import resolve_config
from erasekit.generation import ImageCache, ImageRequest, SamplerSettings
from erasekit.models.loading import base_fingerprint

REQUEST = ImageRequest("a red circle", seed=3)

# Per technique: a semantically different value for every config field. A new field
# without an entry here fails the test, so nobody adds a field that silently shares images.
MACE_CHANGES: dict[str, Any] = {
    "model_id": "<other model>",
    "num_inference_steps": 20,
    "guidance_scale": 5.0,
    "use_fp16": False,
    "device": "cuda:1",
    "erase_concept": "violence",
    "erase_from": "person",
    "lambda_cfr": 0.5,
    "templates": ["a {}", "a photo of {}"],
    "alignment": "concept",
    "preserve_concepts": ["person"],
    "preserve_scale": 0.2,
    "prior_captions": None,
    "prior_scale": 0.1,
    "load_path": "<checkpoint>",
    "overshoot": 0.5,
}
NONE_CHANGES: dict[str, Any] = {**{k: MACE_CHANGES[k] for k in ("model_id", "num_inference_steps", "guidance_scale", "use_fp16")},
                                "device": "cpu"}
# Fields that change the weights, hence the fingerprint (the rest change the sampler part of
# the key). The baseline's weights are the base weights: its fingerprint is the base's.
WEIGHT_FIELDS: dict[str, set[str] | None] = {"mace": None, "none": {"model_id"}}  # None: every field
# File locations that are not the weights: changing them must *not* split the cache.
SAME_IMAGES = {"save_path": "elsewhere/mace.pt"}
# MACE fields of recipe: official_cfr only (a config error otherwise): tested on an official config below
OFFICIAL_ONLY = {"recipe", "concept_type", "train_preserve_scale"}


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    from support.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("other") / "pipe", seed=1)


def _config(name: str, model_dir, tech: dict[str, Any] | None = None, metric: dict[str, Any] | None = None, seed: int = 0):
    base: dict[str, Any] = {"model_id": str(model_dir), "device": "cuda", "num_inference_steps": 50, "guidance_scale": 7.5, "use_fp16": True}
    if name == "mace":
        base.update(erase_concept="nudity", lambda_cfr=0.1)
    base.update(tech or {})
    return {
        "output_dir": "out",
        "seed": seed,
        "technique": {"name": name, "config": base},
        "metrics": [{"name": "clip_score", "config": metric or {"limit": 300}}, {"name": "asr_i2p", "config": {"limit": 50, "concept": "nudity"}}],
    }


def _fingerprint_and_key(data: dict[str, Any]) -> tuple[str, str]:
    run = resolve_config(data)
    tconf = run.technique_config
    fp = run.technique_cls(tconf).fingerprint(base_fingerprint(tconf.model_id), run.technique_name)
    norm = run.normalised()["technique"]["config"]
    import torch

    dtype = "float16" if tconf.use_fp16 else "float32"  # as the loaded pipe reports it on a GPU
    sampler = SamplerSettings(norm["num_inference_steps"], float(norm["guidance_scale"]), 16, 16, dtype=dtype,
                              device=torch.device(tconf.device).type, batch_size=run.raw.batch_size)
    return fp, ImageCache.key(fp, REQUEST, sampler, run.raw.seed)


def _value(field: str, value: Any, tmp_path, other_model) -> Any:
    if value == "<other model>":
        return str(other_model)
    if value == "<checkpoint>":
        p = tmp_path / "edited.pt"
        p.write_bytes(b"some edited weights")
        return str(p)
    return value


@pytest.mark.parametrize(("name", "changes"), [("mace", MACE_CHANGES), ("none", NONE_CHANGES)])
def test_every_technique_field_changes_fingerprint_and_keys(name, changes, tiny_sd_dir, other_model, tmp_path):
    from erasekit.registry import TECHNIQUES, load_builtins

    load_builtins()
    fields = set(TECHNIQUES.get(name).Config.model_fields) - set(SAME_IMAGES) - OFFICIAL_ONLY
    assert fields <= set(changes), f"fields without a test value: {sorted(fields - set(changes))}"
    changes = {k: v for k, v in changes.items() if k in fields}  # (a table entry for a removed field is harmless)
    fp0, key0 = _fingerprint_and_key(_config(name, tiny_sd_dir))
    assert fp0 == _fingerprint_and_key(_config(name, tiny_sd_dir))[0]  # same config, same identity (always shares)
    seen = {key0}
    for field, value in changes.items():
        fp, key = _fingerprint_and_key(_config(name, tiny_sd_dir, {field: _value(field, value, tmp_path, other_model)}))
        weights = WEIGHT_FIELDS[name] is None or field in WEIGHT_FIELDS[name]
        assert (fp != fp0) == weights, f"technique.config.{field}: fingerprint changed {fp != fp0}, expected {weights}"
        assert key != key0, f"technique.config.{field} does not change the cache key"
        seen.add(key)
    assert len(seen) == len(changes) + 1  # and no two changes collide


def test_official_cfr_fields_change_the_fingerprint(tiny_sd_dir):
    official = {"recipe": "official_cfr", "lambda_cfr": 1000.0, "prior_captions": None, "erase_from": "ground"}
    fp0, _ = _fingerprint_and_key(_config("mace", tiny_sd_dir, official))
    plain, _ = _fingerprint_and_key(_config("mace", tiny_sd_dir, {k: v for k, v in official.items() if k != "recipe"}))
    assert fp0 != plain  # the official recipe is other weights than the erasekit recipe
    seen = {fp0}
    for change in ({"concept_type": "style"}, {"prior_captions": "auto", "train_preserve_scale": 1e-4},
                   {"prior_captions": "auto", "train_preserve_scale": 2e-4}, {"lambda_cfr": 10.0}):
        fp, _ = _fingerprint_and_key(_config("mace", tiny_sd_dir, {**official, **change}))
        assert fp not in seen, change
        seen.add(fp)


def test_two_checkpoints_are_two_models(tiny_sd_dir, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights A")
    b.write_bytes(b"weights B")
    fa = _fingerprint_and_key(_config("mace", tiny_sd_dir, {"load_path": str(a)}))[0]
    fb = _fingerprint_and_key(_config("mace", tiny_sd_dir, {"load_path": str(b)}))[0]
    assert fa != fb


def test_save_path_does_not_split_the_cache(tiny_sd_dir):
    ref = _fingerprint_and_key(_config("mace", tiny_sd_dir))
    assert _fingerprint_and_key(_config("mace", tiny_sd_dir, dict(SAME_IMAGES))) == ref


def test_techniques_never_share_images(tiny_sd_dir):
    # the baseline and an edit of the same base model with the same sampler: different keys
    assert _fingerprint_and_key(_config("none", tiny_sd_dir)) != _fingerprint_and_key(_config("mace", tiny_sd_dir))


@pytest.mark.parametrize(
    "metric",
    [{"limit": 10}, {"limit": 300, "device": "cpu"}, {"limit": 300, "preset": "mace"}, {"limit": 300, "clip_model": "x/y"}],
)
@pytest.mark.parametrize("name", ["mace", "none"])
def test_metric_fields_do_not_change_keys(name, metric, tiny_sd_dir):
    ref = _fingerprint_and_key(_config(name, tiny_sd_dir))
    data = _config(name, tiny_sd_dir, metric=metric)
    assert _fingerprint_and_key(data) == ref
    more = copy.deepcopy(data)
    more["metrics"][1]["config"]["limit"] = 7  # the other metric too
    more["output_dir"] = "elsewhere"
    assert _fingerprint_and_key(more) == ref


def test_batch_size_and_cpu_threads_are_in_the_key_and_the_run_id(tiny_sd_dir, tiny_pipe_for_keys):
    """Pixels depend on the batch size (±1 grey level on a few pixels) and, on the CPU, on torch's
    thread count, so both are in the cache key; the batch size is also in the run_id."""
    import torch

    from erasekit.generation import ImageGenerator, sampler_settings

    data = _config("mace", tiny_sd_dir)
    fp, key = _fingerprint_and_key(data)
    other = copy.deepcopy(data)
    other["batch_size"] = data.get("batch_size", 8) + 1
    assert _fingerprint_and_key(other)[0] == fp and _fingerprint_and_key(other)[1] != key
    assert resolve_config(other).run_id() != resolve_config(data).run_id()

    pipe, cache = tiny_pipe_for_keys
    sampler = sampler_settings(pipe, 2, 4.0)

    def keys(batch: int) -> str:
        return ImageGenerator(pipe, "fp", sampler, cache, batch_size=batch, show_progress=False).key(REQUEST)

    threads = torch.get_num_threads()
    try:
        assert keys(2) == keys(2) and keys(2) != keys(3)
        base = keys(2)
        torch.set_num_threads(threads + 1)
        assert keys(2) != base
    finally:
        torch.set_num_threads(threads)
    assert keys(2) == base


def test_run_seed_changes_keys_not_fingerprint(tiny_sd_dir):
    fp0, key0 = _fingerprint_and_key(_config("mace", tiny_sd_dir))
    fp1, key1 = _fingerprint_and_key(_config("mace", tiny_sd_dir, seed=1))
    assert fp0 == fp1 and key0 != key1


@pytest.fixture(scope="module")
def tiny_pipe_for_keys(tmp_path_factory):
    from support.tiny_models import build_tiny_pipeline

    from erasekit.generation import ImageCache

    tmp = tmp_path_factory.mktemp("keys")
    return build_tiny_pipeline(tmp), ImageCache(tmp / "cache")
