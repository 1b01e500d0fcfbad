"""The runner end to end on a tiny SD-shaped pipeline folder, with metrics registered here.

Checks the contract of issue 2: results written as each metric finishes, a metric that
raises is recorded as failed while the others run, exit code 1, report fields present,
atomic writes (no temp files left).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.generation.request import ImageRequest
from erasekit.metrics.base import Metric, MetricResult
from erasekit.registry import METRICS, load_builtins


class _MeanPixel(Metric):
    """Test metric: mean pixel value of two images (real images from the real pipeline)."""

    def requests(self):
        return [ImageRequest("a red circle", seed=1), ImageRequest("a green square", seed=2)]

    def compute(self, images):
        import numpy as np

        vals = [float(np.asarray(im.image).mean()) for im in images]
        recs = [{"prompt": im.request.prompt, "seed": im.request.seed, "key": im.key, "mean": v} for im, v in zip(images, vals, strict=True)]
        return MetricResult(value=sum(vals) / len(vals), details={"n": len(vals)}, records=recs)


class _Boom(Metric):
    """Test metric that always raises in compute."""

    def requests(self):
        return [ImageRequest("a red circle", seed=1)]  # shares an image with _MeanPixel

    def compute(self, images):
        raise RuntimeError("detector exploded")


@pytest.fixture
def test_metrics():
    load_builtins()
    METRICS.register("t_mean_pixel")(_MeanPixel)
    METRICS.register("t_boom")(_Boom)
    yield
    METRICS.unregister("t_mean_pixel")
    METRICS.unregister("t_boom")


def _config(tmp_path: Path, model_dir: Path, metrics: list[dict]) -> Path:
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "technique": {"name": "none", "config": {"model_id": str(model_dir), "device": "cpu", "num_inference_steps": 2}},
        "metrics": metrics,
    }
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg))
    return p


def test_failing_second_metric_keeps_first(tmp_path, tiny_sd_dir, test_metrics, capsys) -> None:
    cfg = _config(tmp_path, tiny_sd_dir, [{"name": "t_mean_pixel", "config": {}}, {"name": "t_boom", "config": {}},
                                          {"name": "t_mean_pixel", "config": {}}])
    code = main(["run", str(cfg), "--no-progress"])
    assert code == 1
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert m["t_mean_pixel"]["status"] == "ok" and 0 <= m["t_mean_pixel"]["value"] <= 255
    assert m["t_boom"]["status"] == "failed" and "detector exploded" in m["t_boom"]["error"]
    assert m["t_mean_pixel#2"]["status"] == "ok"  # metrics after the failure still run
    assert m["t_mean_pixel#2"]["value"] == m["t_mean_pixel"]["value"]
    # per-metric file written for each, records for the ok ones
    assert json.loads((out / "metrics" / "t_mean_pixel.json").read_text())["value"] == m["t_mean_pixel"]["value"]
    assert json.loads((out / "metrics" / "t_boom.json").read_text())["status"] == "failed"
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in recs} == {"t_mean_pixel", "t_mean_pixel#2"}
    assert len(recs) == 4
    # report contract
    assert report["status"] == "failed"
    assert report["erasekit_version"] and len(report["run_id"]) == 16
    assert report["model"]["id"] == str(tiny_sd_dir) and report["model"]["fingerprint"]
    assert report["technique"]["name"] == "none" and report["technique"]["seconds"] is not None
    assert report["images"] == {**report["images"], "requested": 5, "unique": 2, "generated": 2, "reused": 0}
    for lib in ("python", "torch", "diffusers", "transformers"):
        assert report["versions"][lib]
    assert report["config"]["technique"]["config"]["guidance_scale"] == 7.5  # defaults filled in
    assert not list(out.rglob("*.tmp")), "atomic writes leave no temp files"


def test_second_run_reuses_images_and_same_values(tmp_path, tiny_sd_dir, test_metrics, capsys) -> None:
    cfg = _config(tmp_path, tiny_sd_dir, [{"name": "t_mean_pixel", "config": {}}])
    assert main(["run", str(cfg), "--no-progress"]) == 0
    first = json.loads((tmp_path / "out" / "report.json").read_text())
    assert main(["run", str(cfg), "--no-progress"]) == 0
    second = json.loads((tmp_path / "out" / "report.json").read_text())
    assert second["images"]["generated"] == 0 and second["images"]["reused"] == 2
    assert second["metrics"]["t_mean_pixel"]["value"] == first["metrics"]["t_mean_pixel"]["value"]
    assert second["run_id"] == first["run_id"]


def test_technique_failure_is_recorded(tmp_path, tiny_sd_dir, test_metrics, capsys) -> None:
    cfg = {
        "output_dir": str(tmp_path / "out"),
        "technique": {"name": "mace", "config": {"model_id": str(tiny_sd_dir), "device": "cpu", "erase_concept": "circle",
                                                   "load_path": str(tmp_path / "bad.pt")}},
        "metric": {"name": "t_mean_pixel", "config": {}},
    }
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg))
    assert main(["run", str(p), "--no-progress"]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["technique"]["status"] == "failed" and report["technique"]["error"]
    assert report["metrics"]["t_mean_pixel"]["status"] == "skipped"
