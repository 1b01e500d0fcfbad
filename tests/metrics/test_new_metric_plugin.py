"""Adding a metric is one file with one decorator: nothing else in the tree is edited.

The test writes a metric module into the installed ``erasekit/metrics`` folder (as a
contributor would), then drives the real CLI in subprocesses: the metric is listed with
its keys, runs, appears in report.html and in ``compare`` with BenchScore honouring its
declared direction (lower is better here). The file is removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import erasekit.metrics
from erasekit.toyworld import PIPELINE_DIR

pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")

MODULE = '''
"""Mean pixel brightness of images of a few prompts (a test-written metric)."""

from typing import ClassVar

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.datasets.items import PromptItem
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.metrics.common import images_of, mean, prompt_requests, require_images
from erasekit.registry import METRICS


class BrightnessConfig(MetricConfig):
    prompts: list[str] = Field(default_factory=lambda: ["a red circle", "a blue square"], description="prompts to draw")
    gain: float = Field(1.0, gt=0, description="multiplies the brightness")


@METRICS.register("NAME", description="Mean brightness of generated images (lower is better).")
class Brightness(Metric[BrightnessConfig]):
    higher_is_better: ClassVar[bool] = False
    group: ClassVar[str] = "quality"
    example: ClassVar[dict] = {"prompts": ["a red circle"]}

    def setup(self) -> None:
        self.items = [PromptItem(prompt=p) for p in self.config.prompts]

    def requests(self):
        return prompt_requests(self.items)

    def compute(self, images):
        require_images(images, len(self.items), "NAME")
        values = [self.config.gain * sum(im.convert("L").getdata()) / (im.width * im.height) for im in images_of(images)]
        return MetricResult(value=mean(values), details={"per_image": values},
                            records=[image_record(im, brightness=v) for im, v in zip(images, values, strict=True)])
'''


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "erasekit", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def plugin_metric():
    name = f"brightness_{uuid.uuid4().hex[:8]}"
    path = Path(erasekit.metrics.__path__[0]) / f"{name}.py"
    path.write_text(MODULE.replace("NAME", name))
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)
        for cached in (path.parent / "__pycache__").glob(f"{name}.*"):
            cached.unlink(missing_ok=True)


def test_a_metric_in_one_new_file_is_listed_run_reported_and_compared(plugin_metric: str, tmp_path: Path) -> None:
    name = plugin_metric
    listing = _cli("list", cwd=tmp_path)
    assert listing.returncode == 0 and name in listing.stdout
    keys = _cli("list", name, cwd=tmp_path)
    assert keys.returncode == 0, keys.stderr
    assert "gain" in keys.stdout and "multiplies the brightness" in keys.stdout

    runs = {}
    for tech, tconf in (("none", {}), ("mace", {"erase_concept": "circle"})):
        cfg = {"output_dir": str(tmp_path / tech), "cache_dir": str(tmp_path / "cache"),
               "technique": {"name": tech, "config": {"model_id": "toy", "device": "cpu", **tconf}},
               "metrics": [{"name": name, "config": {"prompts": ["a red circle", "a green circle"]}}]}
        (tmp_path / f"{tech}.json").write_text(json.dumps(cfg))
        done = _cli("run", str(tmp_path / f"{tech}.json"), "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads((tmp_path / tech / "report.json").read_text())
        entry = report["metrics"][name]
        assert entry["status"] == "ok" and entry["higher_is_better"] is False and entry["group"] == "quality"
        html = (tmp_path / tech / "report.html").read_text()
        assert name in html and f"{entry['value']:.4f}" in html
        runs[tech] = entry["value"]
    assert runs["none"] != runs["mace"]

    cmp = _cli("compare", str(tmp_path / "none"), str(tmp_path / "mace"), "--format", "json", cwd=tmp_path)
    assert cmp.returncode == 0, cmp.stderr
    rows = {Path(r["run"]).name: r for r in json.loads(cmp.stdout)}
    assert all(name in r["used_in_benchscore"] for r in rows.values())
    better = min(runs, key=runs.get)  # lower brightness is better, as the metric declares
    worse = max(runs, key=runs.get)
    assert rows[better]["quality"] == 1.0 and rows[worse]["quality"] == 0.0
