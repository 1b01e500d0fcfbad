"""What ``run`` cannot use, ``validate`` refuses (exit 2, one short line naming the field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erasekit.cli import main


def _cfg(tmp: Path, technique: dict | None = None, metric: dict | None = None, **top) -> Path:
    cfg = {"output_dir": str(tmp / "out"),
           "technique": technique or {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle"}},
           "metric": metric or {"name": "clip_score", "config": {"limit": 2}}, **top}
    p = tmp / "c.yaml"
    p.write_text(json.dumps(cfg))  # JSON is YAML
    return p


def _refused(p: Path, capsys, field: str, *words: str) -> str:
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) <= 300 and f"config error: {field}" in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("device", ["auto:1", "xpu", "cpu:-1", "cuda:x", "gpu"])
def test_device_strings_run_cannot_use(tmp_path: Path, capsys, device: str) -> None:
    p = _cfg(tmp_path, technique={"name": "none", "config": {"model_id": "toy", "device": device}})
    _refused(p, capsys, "technique.config.device", "unknown device")


def test_a_metric_on_cuda_without_cuda(tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = _cfg(tmp_path, metric={"name": "clip_score", "config": {"limit": 2, "device": "cuda"}})
    _refused(p, capsys, "metric.config.device", "CUDA is not available")
    assert main(["validate", "--portable", str(p)]) == 0


@pytest.mark.parametrize(
    "field,value,words",
    [("lambda_cfr", float("inf"), "finite"), ("preserve_scale", "1e400", "finite"), ("lambda_cfr", float("nan"), "(got nan)")],
)
def test_non_finite_numbers(tmp_path: Path, capsys, field: str, value, words: str) -> None:
    cfg = {"model_id": "toy", "device": "cpu", "erase_concept": "circle", field: value}
    p = tmp_path / "c.yaml"
    text = json.dumps({"output_dir": str(tmp_path / "o"), "technique": {"name": "mace", "config": cfg},
                       "metric": {"name": "clip_score", "config": {"limit": 2}}}, allow_nan=True)
    p.write_text(text.replace("Infinity", ".inf").replace("NaN", ".nan").replace('"1e400"', "1e400"))
    _refused(p, capsys, f"technique.config.{field}", words)


@pytest.mark.parametrize("key,value", [("steps", 10**30), ("batch_size", 10**12), ("topk", 10**9)])
def test_unbounded_attack_settings(tmp_path: Path, capsys, key: str, value: int) -> None:
    p = _cfg(tmp_path, metric={"name": "mma_diffusion", "config": {"prompts": ["a red circle"], "attack": {key: value}}})
    _refused(p, capsys, f"metric.config.attack.{key}")


def test_binary_prior_captions_file(tmp_path: Path, capsys) -> None:
    prior = tmp_path / "prior.txt"
    prior.write_bytes(b"\xff\xfe\x00\x01binary")
    p = _cfg(tmp_path, technique={"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle",
                                                             "prior_captions": str(prior)}})
    _refused(p, capsys, "technique.config.prior_captions", "not UTF-8")


def test_a_megabyte_key_and_control_characters_stay_one_short_line(tmp_path: Path, capsys) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(json.dumps({"output_dir": "o", "technique": {"name": "none"}, "metric": {"name": "clip_score"},
                             "k\x00\x1b[31m" + "x" * 2**20: 1}))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) <= 300 and "\x00" not in err and "\x1b" not in err, err[:400]


@pytest.mark.parametrize(
    "metric,field,words",
    [
        ({"name": "clip_score", "config": {"captions_path": "CAPTIONS"}}, "metric.config.clip_model", "not in the local HF cache"),
        ({"name": "clip_score", "config": {}}, "metric.config.captions_path", "not bundled"),
        ({"name": "fid", "config": {"captions_path": "CAPTIONS", "reference_path": "REFS"}}, "metric.config.inception_weights_path",
         "Inception weights"),
        ({"name": "tifa", "config": {}}, "metric.config.qa_path", "not bundled"),
        ({"name": "asr_i2p", "config": {"concept": "violence", "i2p_path": "CAPTIONS"}}, "metric.config.clip_model", "CLIP model"),
    ],
    ids=["clip-not-cached", "no-captions", "no-inception", "no-tifa", "i2p-clip"],
)
def test_every_asset_a_metric_reads_is_checked_offline(tmp_path: Path, capsys, monkeypatch, tiny_sd_dir: Path,
                                                       metric: dict, field: str, words: str) -> None:
    """On a real (here: tiny SD-shaped) model, a metric whose CLIP, Inception weights or data set is
    not on this machine fails `validate` (and `run`, before loading anything) with the field to set;
    `--no-assets` skips exactly these checks."""
    import torch

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_torch_hub"))
    captions = tmp_path / "captions.csv"
    captions.write_text("prompt,categories\na photo of a dog,violence\n")
    (tmp_path / "refs").mkdir()
    cfg = json.loads(json.dumps(metric).replace("CAPTIONS", str(captions)).replace("REFS", str(tmp_path / "refs")))
    p = _cfg(tmp_path, technique={"name": "none", "config": {"model_id": str(tiny_sd_dir), "device": "cpu"}}, metric=cfg)
    _refused(p, capsys, field, words)
    assert main(["run", str(p), "--no-progress"]) == 2
    assert f"config error: {field}" in capsys.readouterr().err
    assert main(["validate", "--no-assets", str(p)]) == 0
