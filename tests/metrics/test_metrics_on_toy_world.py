"""Metrics I on the trained toy world, where the truth is known (issue 7's "done when").

One MACE run (erase "circle" with its toy synonym "disc", ``overshoot: 1``, compare_to_base) scores asr_custom, asr_i2p, ua_ira (circle /
square), clip_score (retain prompts) and fid on the erased and on the base model; one run of a
deliberately broken sampler (2 DDIM steps) scores fid. Images are generated once per module
into a shared cache. Bars:

- asr_custom("circle") ≥ 0.8 on the base model, ≤ 0.2 after erasing circle;
- ua_ira(circle, square), binary definition (``preset: erasekit``), toy judge: UA ≥ 0.8 and IRA ≥ 0.8 after erasure,
  UA ≤ 0.2 on the base (the mini-CLIP-judged variant is reported alongside);
- clip_score on retain prompts within 5 % of the base model after erasing circle;
- fid(base) < fid(broken sampler).

Why the synonym: the toy target prompts name the concept both ways ("a red circle", "a red
disc"). Erasing the word "circle" alone removes circles from "circle" prompts (0/9 by the judge)
but not from "disc" prompts (6/7), so ASR stays ~0.4-0.5 — the metrics report exactly that; the
spec's answer is a synonym list.

The measured numbers are printed (``-s``) and written to ``toy_metrics1.json`` in the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.metric_harness import write_csv


def _toy_ready() -> bool:
    from erasekit.toyworld import CLIP_DIR, JUDGE_DIR, PIPELINE_DIR

    return (PIPELINE_DIR / "model_index.json").is_file() and (CLIP_DIR / "config.json").is_file() and JUDGE_DIR.is_dir()


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _toy_ready(), reason="toy-world weights not shipped yet")]

N_TARGET = 16
N_RETAIN = 16
N_FID = 96  # = the mini-CLIP's 96-d feature dim: the smallest sample FID accepts without allow_small_sample


def _run(cfg: dict, path: Path) -> dict:
    from erasekit.cli import main

    path.write_text(json.dumps(cfg))
    code = main(["run", str(path), "--no-progress"])
    report = json.loads((Path(cfg["output_dir"]) / "report.json").read_text())
    assert code == 0, json.dumps({k: v.get("error") for k, v in report["metrics"].items()}, indent=1)
    return report


@pytest.fixture(scope="module")
def toy_reports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from erasekit.datasets.toy import toy_retain_prompts

    root = tmp_path_factory.mktemp("toy_m1")
    cache = root / "cache"
    retain = toy_retain_prompts("circle", N_RETAIN + 8)
    retain_csv = write_csv(root / "retain_captions.csv", ["prompt", "seed"], [[it.prompt, it.seed] for it in retain])
    metrics = [
        {"name": "asr_custom", "config": {"concept": "circle", "limit": N_TARGET}},
        {"name": "asr_custom", "config": {"concept": "circle", "limit": N_TARGET, "detector": "toy_judge"}},
        {"name": "asr_i2p", "config": {"limit": N_TARGET}},
        {"name": "ua_ira", "config": {"concept": "circle", "retain_concept": "square", "preset": "erasekit",
                                      "target_limit": N_TARGET, "retain_limit": N_RETAIN}},
        {"name": "ua_ira", "config": {"concept": "circle", "retain_concept": "square", "detector": "clip", "preset": "erasekit",
                                      "target_limit": N_TARGET, "retain_limit": N_RETAIN}},
        {"name": "clip_score", "config": {"captions_path": str(retain_csv), "limit": len(retain)}},
        {"name": "fid", "config": {"limit": N_FID}},
    ]
    mace = {
        "output_dir": str(root / "mace"), "cache_dir": str(cache), "compare_to_base": True, "batch_size": 32,
        "technique": {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": ["circle", "disc"],
                                                 "overshoot": 1.0}},  # the tuned MACE: these bars are about the metrics
        "metrics": metrics,
    }
    broken = {
        "output_dir": str(root / "broken"), "cache_dir": str(cache), "batch_size": 32,
        "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu", "num_inference_steps": 2}},
        "metrics": [{"name": "fid", "config": {"limit": N_FID}}],
    }
    reports = {"mace": _run(mace, root / "mace.json"), "broken": _run(broken, root / "broken.json")}
    m, b = reports["mace"]["metrics"], reports["broken"]["metrics"]
    summary = {
        "asr_custom_clip": {"base": m["asr_custom"]["base_value"], "erased": m["asr_custom"]["value"]},
        "asr_custom_toy_judge": {"base": m["asr_custom#2"]["base_value"], "erased": m["asr_custom#2"]["value"]},
        "asr_i2p": {"base": m["asr_i2p"]["base_value"], "erased": m["asr_i2p"]["value"]},
        "ua": {"base": m["ua_ira"]["base_details"]["ua"], "erased": m["ua_ira"]["details"]["ua"]},
        "ira": {"base": m["ua_ira"]["base_details"]["ira"], "erased": m["ua_ira"]["details"]["ira"]},
        "ua_clip": {"base": m["ua_ira#2"]["base_details"]["ua"], "erased": m["ua_ira#2"]["details"]["ua"]},
        "ira_clip": {"base": m["ua_ira#2"]["base_details"]["ira"], "erased": m["ua_ira#2"]["details"]["ira"]},
        "clip_score_retain": {"base": m["clip_score"]["base_value"], "erased": m["clip_score"]["value"]},
        "fid": {"base": m["fid"]["base_value"], "erased": m["fid"]["value"], "broken_2_steps": b["fid"]["value"]},
        "kid": {"base": m["fid"]["base_details"]["kid"], "erased": m["fid"]["details"]["kid"], "broken_2_steps": b["fid"]["details"]["kid"]},
        "images": reports["mace"]["images"],
        "seconds": {"mace_run": reports["mace"]["timings"].get("total_seconds"), "broken_run": reports["broken"]["timings"].get("total_seconds")},
    }
    (root / "toy_metrics1.json").write_text(json.dumps(summary, indent=1))
    print("\nmetrics I on the toy world:", json.dumps(summary, indent=1))
    reports["summary"] = summary
    return reports


def test_asr_custom_drops_after_erasing_circle(toy_reports: dict) -> None:
    s = toy_reports["summary"]["asr_custom_clip"]
    assert s["base"] >= 0.8, s
    assert s["erased"] <= 0.2, s
    d = toy_reports["mace"]["metrics"]["asr_custom"]["details"]
    assert d["detector"]["model"] == "toy" and d["n_images"] == N_TARGET


def test_asr_i2p_toy_category_moves_the_same_way(toy_reports: dict) -> None:
    s = toy_reports["summary"]["asr_i2p"]
    assert s["erased"] < s["base"], s
    assert toy_reports["mace"]["metrics"]["asr_i2p"]["details"]["concept"] == "circle"


def test_ua_ira_after_erasure_and_on_the_base(toy_reports: dict) -> None:
    ua, ira = toy_reports["summary"]["ua"], toy_reports["summary"]["ira"]
    assert ua["erased"] >= 0.8 and ira["erased"] >= 0.8, (ua, ira)
    assert ua["base"] <= 0.2, ua


def test_clip_score_on_retain_prompts_is_kept(toy_reports: dict) -> None:
    s = toy_reports["summary"]["clip_score_retain"]
    assert s["base"] > 0
    assert abs(s["erased"] - s["base"]) <= 0.05 * s["base"], s


def test_fid_ranks_the_broken_sampler_worse(toy_reports: dict) -> None:
    s = toy_reports["summary"]["fid"]
    assert s["base"] < s["broken_2_steps"], s
    d = toy_reports["mace"]["metrics"]["fid"]["details"]
    assert d["feature_extractor"]["name"] == "clip" and d["feature_extractor"]["dim"] == 96
    assert d["n_generated"] == N_FID and d["small_sample"] is False
    assert d["reference"]["source"] == "toy renderer"
