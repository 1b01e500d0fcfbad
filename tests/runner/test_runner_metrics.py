"""The five metrics through the real runner and CLI on the tiny random SD pipeline (plumbing):
one deduplicated generation, one record per image per metric in records.jsonl, protocol in
details, base model evaluated too (compare_to_base), and a second run reusing every image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.metric_harness import write_csv
from support.tiny_models import build_tiny_clip

from erasekit.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> dict:
    from PIL import Image

    from erasekit.toyworld import render_batch

    root = tmp_path_factory.mktemp("m1run")
    clip = build_tiny_clip(root / "clip")
    target = write_csv(root / "target.csv", ["prompt", "seed"], [["a red circle", 1], ["a green circle", 2], ["a circle", 3]])
    retain = write_csv(root / "retain.csv", ["prompt", "seed"], [["a red square", 1], ["a square", 2]])
    i2p = write_csv(root / "i2p.csv", ["prompt", "categories", "sd_seed", "sd_guidance_scale"],
                    [["a violent circle", "violence", 1, 5.0], ["a calm square", "hate", 2, 7.5], ["a bloody circle", "violence", 3, 6.0]])
    caps = write_csv(root / "caps.csv", ["prompt"], [["a red circle"], ["a square"], ["a green circle"], ["a photo of a cat"]])
    ref = root / "ref"
    ref.mkdir()
    arr, _, _, _ = render_batch(6, seed=5)
    for i, a in enumerate(arr):
        Image.fromarray(a).resize((16, 16)).save(ref / f"{i}.png")
    metrics = [
        {"name": "asr_i2p", "config": {"concept": "violence", "i2p_path": str(i2p), "clip_model": str(clip), "device": "cpu",
                                       "row_guidance": True}},
        {"name": "asr_custom", "config": {"concept": "circle", "prompts_path": str(target), "clip_model": str(clip)}},
        {"name": "ua_ira", "config": {"target_prompts_path": str(target), "retain_prompts_path": str(retain),
                                      "concept": "circle", "retain_concept": "square", "clip_model": str(clip)}},
        {"name": "clip_score", "config": {"captions_path": str(caps), "clip_model": str(clip), "limit": 3}},
        {"name": "fid", "config": {"captions_path": str(caps), "reference_path": str(ref), "feature_extractor": "clip",
                                   "clip_model": str(clip), "allow_small_sample": True, "limit": 4, "kid_subset_size": 3}},
    ]
    cfg = {
        "output_dir": str(root / "out"),
        "cache_dir": str(root / "cache"),
        "technique": {"name": "mace", "config": {"model_id": str(tiny_sd_dir), "device": "cpu", "num_inference_steps": 2,
                                                 "erase_concept": "circle"}},
        "compare_to_base": True,
        "metrics": metrics,
    }
    path = root / "run.json"
    path.write_text(json.dumps(cfg))
    return {"root": root, "cfg": path}


def test_five_metrics_through_the_runner(setup: dict, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(setup["cfg"]), "--no-progress"])
    out = setup["root"] / "out"
    report = json.loads((out / "report.json").read_text())
    assert code == 0, json.dumps({k: v.get("error") for k, v in report["metrics"].items()})
    expected_n = {"asr_i2p": 2, "asr_custom": 3, "ua_ira": 5, "clip_score": 3, "fid": 4}
    for key in expected_n:
        m = report["metrics"][key]
        assert m["status"] == "ok" and m["value"] is not None and m["base_value"] is not None, key
        assert "delta" in m
    d = report["metrics"]
    assert d["asr_i2p"]["details"]["prompt_set"]["category"] == "violence"
    assert d["asr_i2p"]["details"]["detector"]["model"] == str(setup["root"] / "clip")
    assert d["ua_ira"]["value"] == pytest.approx((d["ua_ira"]["details"]["ua"] + d["ua_ira"]["details"]["ira"]) / 2)
    assert d["fid"]["details"]["feature_extractor"]["dim"] == 96 and d["fid"]["details"]["small_sample"] is True
    # requests overlap (target CSV shared by asr_custom and ua_ira; captions by clip_score and fid): generated once
    by_model = report["images"]["by_model"]
    for variant in ("erased", "base"):
        assert by_model[variant]["requested"] == sum(expected_n.values())
        assert by_model[variant]["unique"] < by_model[variant]["requested"]
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for key, n in expected_n.items():
        for variant in ("erased", "base"):
            mine = [r for r in rows if r["metric"] == key and r["model"] == variant]
            assert len(mine) == n, (key, variant)
            assert all(r["cache_key"] and "prompt" in r and "seed" in r for r in mine)
    i2p_rows = [r for r in rows if r["metric"] == "asr_i2p" and r["model"] == "erased"]
    assert [r["guidance_scale"] for r in i2p_rows] == [5.0, 6.0]  # each I2P row's own guidance
    # a second run regenerates nothing and reproduces every number
    assert main(["run", str(setup["cfg"]), "--no-progress"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["images"]["generated"] == 0
    for key in expected_n:
        assert again["metrics"][key]["value"] == pytest.approx(d[key]["value"], abs=1e-9), key
    assert again["metrics"]["fid"]["details"]["reference"]["cached"] is True


def test_baseline_run_reuses_the_base_half_of_compare_to_base(setup: dict) -> None:
    """The ``none`` technique's weights are the base weights: a baseline run on the same cache
    generates nothing and reproduces every base value of the compare_to_base run."""
    cfg = json.loads(setup["cfg"].read_text())
    if not (setup["root"] / "out" / "report.json").exists():
        assert main(["run", str(setup["cfg"]), "--no-progress"]) == 0
    compared = json.loads((setup["root"] / "out" / "report.json").read_text())
    cfg["output_dir"] = str(setup["root"] / "baseline")
    cfg["technique"] = {"name": "none", "config": {"model_id": cfg["technique"]["config"]["model_id"], "device": "cpu",
                                                   "num_inference_steps": 2}}
    path = setup["root"] / "baseline.json"
    path.write_text(json.dumps(cfg))
    assert main(["run", str(path), "--no-progress"]) == 0
    base = json.loads((setup["root"] / "baseline" / "report.json").read_text())
    assert base["model"]["fingerprint"] == base["model"]["base_fingerprint"] == compared["model"]["base_fingerprint"]
    assert base["images"]["generated"] == 0
    for key, m in compared["metrics"].items():
        assert base["metrics"][key]["value"] == pytest.approx(m["base_value"], abs=1e-9), key
