"""Every validation rule: a config that breaks it → exit code 2, one line naming the field.

Runs the real CLI entry point in-process (``erasekit.cli.main``) so the exit code and the
printed message are exactly what a user sees.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from erasekit.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC_EXAMPLES = sorted((REPO / "examples").glob("mace_*.json"))

BASE = {
    "output_dir": "results/x",
    "technique": {"name": "mace", "config": {"erase_concept": "nudity", "lambda_cfr": 0.1, "device": "cpu"}},
    "metric": {"name": "asr_i2p", "config": {"limit": 5}},
}


def validate(cfg: dict, tmp_path: Path, capsys: pytest.CaptureFixture, suffix: str = ".json") -> tuple[int, str]:
    p = tmp_path / f"cfg{suffix}"
    p.write_text(json.dumps(cfg))
    code = main(["validate", "--portable", str(p)])  # config rules only: SD v1.4 / CUDA are not on this machine
    err = capsys.readouterr().err.strip()
    return code, err


def expect_error(cfg: dict, tmp_path: Path, capsys: pytest.CaptureFixture, path: str, *words: str) -> str:
    code, err = validate(cfg, tmp_path, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"config error: {path}:" in err, err
    assert "Fix:" in err, err
    for w in words:
        assert w in err, err
    return err


def cfg_with(**changes) -> dict:
    c = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = c
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value
    return c


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda p: p.name)
def test_spec_examples_validate_without_loading_models(example: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    for mod in [m for m in sys.modules if m.startswith("diffusers")]:
        monkeypatch.delitem(sys.modules, mod)
    assert main(["validate", "--portable", str(example)]) == 0  # written for a CUDA machine
    assert "OK" in capsys.readouterr().out
    assert not any(m.startswith("diffusers") for m in sys.modules), "validate must not load model code"
    import torch

    if not torch.cuda.is_available():  # here `run` would refuse device: cuda, so `validate` must too
        assert main(["validate", str(example)]) == 2
        err = capsys.readouterr().err
        assert "config error: technique.config.device: 'cuda' requested but CUDA is not available" in err, err


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_readme_examples_validate(example: Path, monkeypatch, capsys) -> None:
    """The README's example configs are valid: the technique family runs on the toy world, the SD 2.1 /
    SDXL configs (their models are not on this machine: --portable)."""
    monkeypatch.chdir(REPO)
    assert main(["validate", "--portable", str(example)]) == 0
    assert "OK" in capsys.readouterr().out


def test_spec_examples_are_the_three_from_the_spec() -> None:
    assert [p.name for p in SPEC_EXAMPLES] == ["mace_asr.json", "mace_nudity_multi.json", "mace_nudity_synonyms.json"]


def test_valid_base_config(tmp_path, capsys) -> None:
    assert validate(BASE, tmp_path, capsys)[0] == 0


# ---- unknown keys anywhere
@pytest.mark.parametrize(
    "mutate,path",
    [
        (lambda c: c.__setitem__("outptu_dir", "x"), "outptu_dir"),
        (lambda c: c["technique"].__setitem__("cfg", {}), "technique.cfg"),
        (lambda c: c["technique"]["config"].__setitem__("lamda_cfr", 0.1), "technique.config.lamda_cfr"),
        (lambda c: c["metric"]["config"].__setitem__("limt", 5), "metric.config.limt"),
        (lambda c: c["metric"].__setitem__("extra", 1), "metric.extra"),
    ],
)
def test_unknown_keys(mutate, path, tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    mutate(c)
    expect_error(c, tmp_path, capsys, path, "unknown key")


def test_unknown_key_in_metrics_list_names_index_and_suggests(tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    del c["metric"]
    c["metrics"] = [{"name": "asr_i2p", "config": {}}, {"name": "clip_score", "config": {}},
                    {"name": "fid", "config": {"limitt": 3}}]
    err = expect_error(c, tmp_path, capsys, "metrics[2].config.limitt")
    assert "did you mean 'limit'" in err


# ---- wrong types
@pytest.mark.parametrize(
    "changes,path",
    [
        ({"output_dir": 5}, "output_dir"),
        ({"technique__config__lambda_cfr": "strong"}, "technique.config.lambda_cfr"),
        ({"technique__config__erase_concept": 5}, "technique.config.erase_concept"),
        ({"technique__config__erase_concept": ["nudity", 3]}, "technique.config.erase_concept"),
        ({"technique__config__use_fp16": "maybe"}, "technique.config.use_fp16"),
        ({"metric__config__limit": "many"}, "metric.config.limit"),
        ({"metric__config__limit": 2.5}, "metric.config.limit"),
        ({"technique__config": ["a"]}, "technique.config"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_wrong_types(changes, path, tmp_path, capsys) -> None:
    expect_error(cfg_with(**changes), tmp_path, capsys, path)


# ---- ranges
@pytest.mark.parametrize(
    "changes,path",
    [
        ({"technique__config__lambda_cfr": 0}, "technique.config.lambda_cfr"),
        ({"technique__config__lambda_cfr": -1.0}, "technique.config.lambda_cfr"),
        ({"technique__config__num_inference_steps": 0}, "technique.config.num_inference_steps"),
        ({"technique__config__guidance_scale": -2}, "technique.config.guidance_scale"),
        ({"metric__config__limit": 0}, "metric.config.limit"),
        ({"seed": -1}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"technique__config__erase_concept": ""}, "technique.config.erase_concept"),
        ({"technique__config__erase_concept": []}, "technique.config.erase_concept"),
        ({"technique__config__device": "tpu"}, "technique.config.device"),
    ],
)
def test_ranges(changes, path, tmp_path, capsys) -> None:
    expect_error(cfg_with(**changes), tmp_path, capsys, path)


# ---- names
def test_unknown_technique_suggests(tmp_path, capsys) -> None:
    err = expect_error(cfg_with(technique__name="macee"), tmp_path, capsys, "technique.name")
    assert "did you mean 'mace'" in err


def test_unknown_metric_suggests(tmp_path, capsys) -> None:
    err = expect_error(cfg_with(metric__name="asr_ip2"), tmp_path, capsys, "metric.name")
    assert "did you mean 'asr_i2p'" in err


def test_mma_alias_accepted(tmp_path, capsys) -> None:
    c = cfg_with(metric={"name": "asr_mma_diffusion", "config": {}})
    assert validate(c, tmp_path, capsys)[0] == 0


# ---- metric / metrics shape
def test_both_metric_and_metrics(tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    c["metrics"] = [c["metric"]]
    expect_error(c, tmp_path, capsys, "metrics", "both")


def test_neither_metric_nor_metrics(tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    del c["metric"]
    expect_error(c, tmp_path, capsys, "metric", "no metric")


def test_empty_metrics_list(tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    del c["metric"]
    c["metrics"] = []
    expect_error(c, tmp_path, capsys, "metrics", "empty")


@pytest.mark.parametrize("key", ["output_dir", "technique"])
def test_missing_required(key, tmp_path, capsys) -> None:
    c = copy.deepcopy(BASE)
    del c[key]
    expect_error(c, tmp_path, capsys, key, "required")


# ---- compatibility: err needs nudity (first element of a list decides)
def test_err_rejects_non_nudity(tmp_path, capsys) -> None:
    c = cfg_with(technique__config__erase_concept="van gogh", metric={"name": "err", "config": {}})
    expect_error(c, tmp_path, capsys, "technique.config.erase_concept", "nudity")


def test_err_list_first_element_decides(tmp_path, capsys) -> None:
    bad = cfg_with(technique__config__erase_concept=["naked", "nudity"], metric={"name": "err", "config": {}})
    bad["technique"]["config"]["erase_concept"] = ["cat", "nudity"]
    expect_error(bad, tmp_path, capsys, "technique.config.erase_concept", "first element")
    good = cfg_with(technique__config__erase_concept=["nudity", "nude", "naked"], metric={"name": "err", "config": {}})
    assert validate(good, tmp_path, capsys)[0] == 0  # a list must not crash (a known bug elsewhere)


def test_err_toy_concepts_only_on_toy(tmp_path, capsys) -> None:
    toy = cfg_with(technique__config__erase_concept="circle", technique__config__model_id="toy",
                   metric={"name": "err", "config": {}})
    assert validate(toy, tmp_path, capsys)[0] == 0
    sd = cfg_with(technique__config__erase_concept="circle", metric={"name": "err", "config": {}})
    expect_error(sd, tmp_path, capsys, "technique.config.erase_concept")


def test_err_with_baseline_needs_concept(tmp_path, capsys) -> None:
    c = cfg_with(technique={"name": "none", "config": {"device": "cpu"}}, metric={"name": "err", "config": {}})
    expect_error(c, tmp_path, capsys, "metric.config.concept")
    c["metric"]["config"]["concept"] = "nudity"
    assert validate(c, tmp_path, capsys)[0] == 0


# ---- compatibility: ua_ira needs both CSVs, existing, with a prompt column
def _csv(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_ua_ira_requires_both_paths(tmp_path, capsys) -> None:
    target = _csv(tmp_path, "t.csv", "prompt\na\n")
    c = cfg_with(metric={"name": "ua_ira", "config": {"target_prompts_path": target, "retain_concept": "person"}})
    expect_error(c, tmp_path, capsys, "metric.config.retain_prompts_path", "required")
    c["metric"]["config"] = {"retain_prompts_path": target, "retain_concept": "person"}
    expect_error(c, tmp_path, capsys, "metric.config.target_prompts_path", "required")


def test_ua_ira_file_must_exist(tmp_path, capsys) -> None:
    target = _csv(tmp_path, "t.csv", "prompt\na\n")
    c = cfg_with(metric={"name": "ua_ira", "config": {"target_prompts_path": target, "retain_prompts_path": str(tmp_path / "nope.csv"), "retain_concept": "person"}})
    expect_error(c, tmp_path, capsys, "metric.config.retain_prompts_path", "not found")


def test_ua_ira_needs_prompt_column(tmp_path, capsys) -> None:
    target = _csv(tmp_path, "t.csv", "prompt\na\n")
    retain = _csv(tmp_path, "r.csv", "text,seed\na,1\n")
    c = cfg_with(metric={"name": "ua_ira", "config": {"target_prompts_path": target, "retain_prompts_path": retain, "retain_concept": "person"}})
    expect_error(c, tmp_path, capsys, "metric.config.retain_prompts_path", "'prompt' column")


def test_ua_ira_needs_retain_concept(tmp_path, capsys) -> None:
    target = _csv(tmp_path, "t.csv", "prompt\na\n")
    c = cfg_with(metric={"name": "ua_ira", "config": {"target_prompts_path": target, "retain_prompts_path": target}})
    expect_error(c, tmp_path, capsys, "metric.config.retain_concept")


# ---- compatibility: mma_diffusion needs target prompts unless nudity
def test_mma_needs_targets_for_non_nudity(tmp_path, capsys) -> None:
    c = cfg_with(technique__config__erase_concept="van gogh", metric={"name": "mma_diffusion", "config": {}})
    expect_error(c, tmp_path, capsys, "metric.config.prompts", "target prompts")
    c["metric"]["config"]["prompts"] = ["a painting by van gogh"]
    assert validate(c, tmp_path, capsys)[0] == 0
    nud = cfg_with(metric={"name": "mma_diffusion", "config": {}})
    assert validate(nud, tmp_path, capsys)[0] == 0


# ---- load_path / save_path
def test_load_path_equals_save_path(tmp_path, capsys) -> None:
    ck = tmp_path / "w.pt"
    ck.write_bytes(b"x")
    c = cfg_with(technique__config__load_path=str(ck), technique__config__save_path=str(ck))
    expect_error(c, tmp_path, capsys, "technique.config.save_path", "same file")


def test_load_path_must_exist(tmp_path, capsys) -> None:
    c = cfg_with(technique__config__load_path=str(tmp_path / "missing.pt"))
    expect_error(c, tmp_path, capsys, "technique.config.load_path", "not found")


# ---- file-level problems
def test_bad_yaml(tmp_path, capsys) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("output_dir: [unclosed\n")
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and len(err.splitlines()) == 1


def test_bad_json(tmp_path, capsys) -> None:
    p = tmp_path / "c.json"
    p.write_text("{\"output_dir\": }")
    assert main(["validate", str(p)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_yaml_config_accepted(tmp_path, capsys) -> None:
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert main(["validate", "--portable", str(p)]) == 0


def test_yaml_cannot_construct_objects(tmp_path, capsys) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("output_dir: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["validate", str(p)]) == 2
    assert "pwned" not in capsys.readouterr().out


def test_top_level_must_be_mapping(tmp_path, capsys) -> None:
    p = tmp_path / "c.json"
    p.write_text("[1, 2]")
    assert main(["validate", str(p)]) == 2
    assert "mapping" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys) -> None:
    assert main(["validate", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_run_refuses_cuda_without_gpu_before_loading(tmp_path, capsys, monkeypatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    c = cfg_with(technique__config__device="cuda", output_dir=str(tmp_path / "out"))
    p = tmp_path / "c.json"
    p.write_text(json.dumps(c))
    called = []
    import erasekit.models.loading as loading

    monkeypatch.setattr(loading, "load_base_pipeline", lambda *a, **k: called.append(1))
    assert main(["run", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "device: cpu" in err
    assert not called


def test_run_id_stable_and_config_sensitive() -> None:
    from erasekit.config import resolve_config

    a = resolve_config(copy.deepcopy(BASE)).run_id()
    b = resolve_config(copy.deepcopy(BASE)).run_id()
    moved = resolve_config(cfg_with(output_dir="elsewhere")).run_id()
    changed = resolve_config(cfg_with(technique__config__lambda_cfr=0.2)).run_id()
    assert a == b == moved
    assert a != changed


def test_normalised_config_fills_defaults() -> None:
    from erasekit.config import resolve_config

    norm = resolve_config(copy.deepcopy(BASE)).normalised()
    tc = norm["technique"]["config"]
    assert tc["num_inference_steps"] == 50 and tc["guidance_scale"] == 7.5  # the spec's defaults for SD v1.4
    assert tc["use_fp16"] is True and tc["erase_from"] is None and tc["save_path"] is None
    assert norm["metrics"][0]["config"]["limit"] == 5
    assert norm["cache_dir"].endswith("cache")


def test_validate_checks_the_model_is_available_offline(tmp_path, capsys) -> None:
    """`run` would fail on a model that is not on this machine, so `validate` says so first
    (``--portable`` skips this machine's checks)."""
    cfg = {**BASE, "output_dir": str(tmp_path / "out"),
           "technique": {"name": "mace", "config": {"erase_concept": "nudity", "device": "cpu",
                                                    "model_id": str(tmp_path / "no-such-model")}}}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "config error: technique.config.model_id:" in err and len(err.strip().splitlines()) == 1, err
    assert main(["validate", "--portable", str(p)]) == 0
