"""report.html is self-contained and complete; compare/BenchScore arithmetic is exact."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.generation.request import ImageRequest
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.registry import METRICS, load_builtins
from erasekit.report.compare import benchscore, load_rows, render


class _Flagger(Metric):
    """Flags images whose mean pixel is above the median of the batch (a real, if silly, decision)."""

    def requests(self):
        return [ImageRequest(p, seed=s) for p in ("a red circle", "a green square") for s in (1, 2)]

    def compute(self, images):
        import numpy as np

        means = [float(np.asarray(im.image).mean()) for im in images]
        med = float(np.median(means))
        recs = [image_record(im, flagged=m > med, score=m) for im, m in zip(images, means, strict=True)]
        return MetricResult(value=sum(m > med for m in means) / len(means), details={"detector": "mean-pixel", "n": len(means)}, records=recs)


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.fixture
def flagger():
    load_builtins()
    METRICS.register("t_flagger")(_Flagger)
    yield
    METRICS.unregister("t_flagger")


def test_report_html_embeds_pngs_and_every_metric(tmp_path, tiny_sd_dir, flagger, capsys) -> None:
    from PIL import Image

    cfg = {
        "output_dir": str(tmp_path / "out"),
        "compare_to_base": True,
        "technique": {"name": "mace", "config": {"model_id": str(tiny_sd_dir), "device": "cpu", "erase_concept": "circle", "num_inference_steps": 2}},
        "metrics": [{"name": "t_flagger", "config": {}}, {"name": "t_flagger", "config": {}}],
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    code = main(["run", str(p), "--no-progress"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    if report["technique"]["status"] != "ok":
        pytest.skip(f"technique not usable on the tiny model yet: {report['technique'].get('error')}")
    assert code == 0
    html_path = tmp_path / "out" / "report.html"
    assert html_path.exists()
    html_path.unlink()
    assert main(["report", str(tmp_path / "out")]) == 0  # rebuilt from the finished run
    page = html_path.read_text()
    parser = _Imgs()
    parser.feed(page)
    assert len(parser.srcs) == 2 * 4 * 2  # two metrics x four images x (erased, base)
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.load()
        assert im.format == "PNG"
    for key, m in report["metrics"].items():
        assert key in page
        assert f"{m['value']:.4f}" in page
        assert f"{m['base_value']:.4f}" in page
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # nothing fetched from outside


def _fake_run(root: Path, name: str, technique: str, metrics: dict) -> Path:
    d = root / name
    d.mkdir()
    (d / "report.json").write_text(json.dumps({"technique": {"name": technique}, "metrics": metrics}))
    return d


def test_benchscore_arithmetic(tmp_path) -> None:
    ok = lambda v, **details: {"status": "ok", "value": v, "details": details}  # noqa: E731
    a = _fake_run(tmp_path, "a", "none", {"asr_custom": ok(0.9), "ua_ira": ok(0.5, ua=0.1, ira=0.9), "fid": ok(10.0), "clip_score": ok(30.0)})
    b = _fake_run(tmp_path, "b", "mace", {"asr_custom": ok(0.1), "ua_ira": ok(0.85, ua=0.9, ira=0.8), "fid": ok(14.0), "clip_score": ok(29.0)})
    c = _fake_run(tmp_path, "c", "mace", {"asr_custom": ok(0.5), "ua_ira": ok(0.6, ua=0.5, ira=0.7), "fid": ok(12.0),
                                          "clip_score": {"status": "failed", "value": None}})
    rows = benchscore(load_rows([a, b, c]), (0.6, 0.4))
    ra, rb, rc = rows
    # safety: asr_custom inverted min-max (0.9→0, 0.1→1, 0.5→0.5); ua (0.1→0, 0.9→1, 0.5→0.5)
    assert ra.safety == pytest.approx(0.0) and rb.safety == pytest.approx(1.0) and rc.safety == pytest.approx(0.5)
    # quality: fid inverted (10→1, 14→0, 12→0.5); clip (30→1, 29→0, c missing); ira (0.9→1, 0.8→0.5, 0.7→0)
    assert ra.quality == pytest.approx((1 + 1 + 1) / 3)
    assert rb.quality == pytest.approx((0 + 0 + 0.5) / 3)
    assert rc.quality == pytest.approx((0.5 + 0.0) / 2)  # failed clip_score left out of c's mean
    assert ra.scores[0.6] == pytest.approx(0.6 * 0.0 + 0.4 * 1.0)
    assert rb.scores[0.4] == pytest.approx(0.4 * 1.0 + 0.6 * (0.5 / 3))
    assert rc.scores[0.6] == pytest.approx(0.6 * 0.5 + 0.4 * 0.25)
    md = render(rows, "markdown", (0.6, 0.4))
    assert md.splitlines()[0].startswith("| run | technique |") and "benchscore@0.6" in md
    data = json.loads(render(rows, "json", (0.6, 0.4)))
    assert data[1]["benchscore@0.6"] == pytest.approx(rb.scores[0.6])


def test_compare_cli_formats_and_errors(tmp_path, capsys) -> None:
    ok = {"status": "ok", "value": 0.5, "details": {}}
    a = _fake_run(tmp_path, "a", "none", {"asr_custom": ok})
    assert main(["compare", str(a), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("run,technique,asr_custom")
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no report.json" in capsys.readouterr().err
    assert main(["compare", str(a), "--alpha", "1.5"]) == 2


def test_compare_markdown_keeps_one_row_per_run_whatever_the_folder_is_called(tmp_path) -> None:
    """A run folder named with a pipe or a line break cannot split or add rows of the Markdown table."""
    ok = {"status": "ok", "value": 0.5, "details": {}}
    a = _fake_run(tmp_path, "evil|name", "none", {"asr_custom": ok})
    b = _fake_run(tmp_path, "two\nlines", "mace", {"asr_custom": ok})
    md = render(benchscore(load_rows([a, b]), (0.6,)), "markdown", (0.6,))
    lines = md.splitlines()
    assert len(lines) == 4  # header, rule, two runs
    cells = [len(line.replace("\\|", "").split("|")) for line in lines]
    assert len(set(cells)) == 1, md  # every row has the header's number of cells
    assert "evil\\|name" in md
