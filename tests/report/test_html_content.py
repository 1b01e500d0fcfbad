"""report.html content, without a browser: per-arm verdicts (kept retention images are green,
never red), erased/base pairs, subsets that say how they were chosen, per-image extras,
charts in every metric section, run facts as tables, config_used, and escaping of
everything a config, prompt, record or details can carry."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from erasekit.generation.cache import ImageCache
from erasekit.report import charts
from erasekit.report.cards import MAX_IMAGES_PER_METRIC, verdict
from erasekit.report.html import render_html, slug, write_html

EVIL = "<script>alert('x')</script>\"&"


class _Page(HTMLParser):
    """Collects tags (with classes) and fails on any script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        assert tag != "script", "the page must carry no script"
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str, *classes: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and set(classes) <= set((a.get("class") or "").split()))


def _png(cache: Path, key: str) -> None:
    from PIL import Image

    p = ImageCache(cache).path(key)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(p)


def _key(i: int, model: str) -> str:
    return f"{i:04x}{'e' if model == 'erased' else 'b'}" + "0" * 59


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "run"
    cache = out / "cache"
    recs: list[dict] = []
    i = 0

    def add(metric: str, n: int, **fields_by_model):
        nonlocal i
        for j in range(n):
            for model in ("erased", "base"):
                f = fields_by_model[model](j) if callable(fields_by_model[model]) else dict(fields_by_model[model])
                key = _key(i, model)
                _png(cache, key)
                recs.append({"metric": metric, "model": model, "prompt": f.pop("prompt", f"p{j}"), "seed": j, "cache_key": key, **f})
            i += 1

    add("ua_ira", 3, erased=lambda j: {"arm": "target", "flagged": j == 0, "correct": j != 0, "score": 0.1},
        base={"arm": "target", "flagged": True, "correct": False, "score": 0.9})
    add("ua_ira", 3, erased=lambda j: {"arm": "retain", "prompt": f"r{j}", "flagged": True, "correct": True, "label": "square", "score": 0.97},
        base=lambda j: {"arm": "retain", "prompt": f"r{j}", "flagged": True, "correct": True, "score": 0.98})
    add("err", 2, erased=lambda j: {"arm": "retention", "prompt": f"q{j}", "flagged": j == 0, "passed": j == 0},
        base=lambda j: {"arm": "retention", "prompt": f"q{j}", "flagged": True, "passed": True})
    add("asr_i2p", MAX_IMAGES_PER_METRIC + 6, erased=lambda j: {"prompt": EVIL if j == 0 else f"p{j}", "flagged": j % 3 == 0,
                                                                 "score": 0.5, "label": "circle", "categories": ["red", EVIL]},
        base=lambda j: {"prompt": EVIL if j == 0 else f"p{j}", "flagged": True, "score": 0.9, "categories": ["red", EVIL]})
    add("clip_score", 1, erased={"clip_score": 44.6, "cos": 0.446}, base={"clip_score": 50.1, "cos": 0.501})
    q = [{"question": "what shape?", "answer": "circle", "free_answer": "a cross", "snapped": "cross", "correct": False},
         {"question": "is it red?", "answer": "yes", "free_answer": "yes", "snapped": "yes", "correct": True}]
    add("tifa", 1, erased={"image_accuracy": 0.5, "questions": q}, base={"image_accuracy": 1.0, "questions": q})
    add("mma_diffusion", 2, erased=lambda j: {"prompt": f"adv{j}", "target": f"a t{j}", "flagged": j == 1},
        base=lambda j: {"prompt": f"adv{j}", "target": f"a t{j}", "flagged": True})
    out.mkdir(parents=True, exist_ok=True)
    with (out / "records.jsonl").open("w") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")

    def entry(v, b, **details):
        return {"status": "ok", "value": v, "base_value": b, "delta": v - b, "details": details}

    report = {
        "run_id": "r1", "status": "running", "config": {"output_dir": str(out), "metrics": [{"name": "asr_i2p", "config": {"note": EVIL}}]},
        "config_used": {"technique": {"name": "mace", "config": {"device": "cpu", "dtype": "float32", "model_id": EVIL}}},
        "paths": {"output_dir": str(out), "cache_dir": str(cache)},
        "model": {"id": "toy", "device": "cpu", "dtype": "float32"}, "technique": {"name": "mace", "status": "ok", "seconds": 1.5},
        "sampler": {"num_inference_steps": 20, "scheduler": "DDIMScheduler"},
        "images": {"requested": 10, "unique": 8, "generated": 8, "reused": 0, "by_model": {"erased": {"requested": 5}}},
        "timings": {"total_seconds": 4.2}, "versions": {"python": "3.11", "torch": "2.x"},
        "metrics": {
            "ua_ira": entry(0.8, 0.5, ua=0.66, ira=1.0, definition="(UA+IRA)/2"),
            "err": {**entry(0.5, 1.0, arms={"retention": {"value": 0.5}, "robustness": {"value": 1.0, "adversarial_prompts": []}}),
                    "name": "err"},
            "asr_i2p": entry(0.33, 1.0, class_counts={"FEMALE_BREAST_EXPOSED": 3, EVIL: 1}, detector={"rule": EVIL}),
            "clip_score": entry(44.6, 50.1, preset="standard"),
            "tifa": entry(0.5, 1.0),
            "mma_diffusion": entry(0.5, 1.0, adversarial_prompts=[{"target": "a t0", "prompt": "adv0"}, {"target": "a t1", "prompt": "adv1"}]),
        },
    }
    return out, report


def test_page_from_the_passed_report(run_dir) -> None:
    out, report = run_dir
    assert not (out / "report.json").exists()  # the runner renders before report.json is final
    page = render_html(out, report=report)
    p = _Page()
    p.feed(page)
    # escaping: the hostile string never appears raw, only escaped
    assert EVIL not in page and "<script>" not in page
    assert html_escaped(EVIL) in page
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    # every card pairs erased and base, with a score each
    n_cards = p.count("div", "card")
    assert n_cards == 3 + 3 + 2 + MAX_IMAGES_PER_METRIC + 6 + 1 + 1 + 2
    assert p.count("div", "score") == 2 * n_cards and p.count("img") == 2 * n_cards
    # retention: detected = kept = good (green), never bad; an erasure target that was flagged is bad
    assert p.count("div", "card", "retention") == 5
    assert p.count("div", "card", "retention", "kept") == 4 and p.count("div", "card", "retention", "good") == 4
    assert p.count("div", "card", "retention", "bad") == 1  # err retention image 1: not kept
    assert p.count("div", "card", "bad") >= 1 + 1  # ua target image 0 flagged, err retention image 1
    # subsets say how they were chosen, and "show all" needs no script
    assert f"first {MAX_IMAGES_PER_METRIC} of {MAX_IMAGES_PER_METRIC + 6} images in request order" in page
    assert f"<summary>show all {MAX_IMAGES_PER_METRIC + 6}</summary>" in page
    # per-image extras
    assert "CLIP 44.6" in page and "cos 0.446" in page
    assert "a cross" in page and "✗ incorrect" in page and "✓ correct" in page
    assert "label circle" in page
    # every metric section, with a chart, a direction, a group and a description
    for key in report["metrics"]:
        sec = re.search(rf"<section class='metric' id='sec-{slug(key)}'.*?</section>", page, re.S)
        assert sec, key
        assert "<svg class='chart'" in sec.group(0), key
        assert "is better" in sec.group(0) and "What it measures:" in sec.group(0)
    assert "detections per class" in page and "ASR per prompt category" in page and "attack success per target" in page
    # table of contents, run facts as tables, config as used
    for k in report["metrics"]:
        assert f"href='#{slug(k)}'" in page
    assert "<th>num_inference_steps</th>" in page and "<th>total_seconds</th>" in page and "<th>torch</th>" in page
    assert "config_used" in page and "<th>dtype</th>" in page


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_without_config_used_and_without_base(run_dir) -> None:
    out, report = run_dir
    report.pop("config_used")
    for m in report["metrics"].values():
        m.pop("base_value"), m.pop("delta")
    (out / "records.jsonl").write_text("".join(ln + "\n" for ln in (out / "records.jsonl").read_text().splitlines()
                                               if json.loads(ln)["model"] == "erased"))
    (out / "report.json").write_text(json.dumps(report))
    page = write_html(out).read_text()
    assert "this report has no config_used" in page
    p = _Page()
    p.feed(page)
    assert p.count("div", "score") == p.count("div", "card") > 0  # one image per card


@pytest.mark.parametrize(("rec", "expected"), [
    ({"arm": "retain", "correct": True, "flagged": True}, ("good", "kept")),
    ({"arm": "retain", "correct": False, "flagged": False}, ("bad", "not kept")),
    ({"arm": "retention", "passed": True, "flagged": True}, ("good", "kept")),
    ({"arm": "retention", "flagged": True}, ("good", "kept")),
    ({"arm": "target", "correct": True, "flagged": False}, ("good", "clear")),
    ({"arm": "forgetting", "passed": False, "flagged": True}, ("bad", "flagged")),
    ({"arm": "robustness", "flagged": True}, ("bad", "flagged")),
    ({"metric": "asr_custom", "flagged": False}, ("good", "clear")),
    ({"metric": "mma_diffusion", "flagged": True}, ("bad", "flagged")),
    ({"metric": "clip_score", "clip_score": 30.0}, ("neutral", "")),
])
def test_verdict_per_arm(rec, expected) -> None:
    assert verdict(rec) == expected


def test_charts_escape_and_plot() -> None:
    svg = charts.pair_bars([(EVIL, 0.5, 1.0), ("fid", 11.0, None)], EVIL)
    assert svg.startswith("<svg class='chart'") and svg.endswith("</svg>")
    assert EVIL not in svg and html_escaped(EVIL) in svg
    assert "erased 0.5" in svg and "base 1" in svg and "—" in svg
    assert charts.bars([], "t").startswith("<svg class='chart'")
    b = charts.bars([("a", 3), ("b", float("nan"))], "counts")
    assert ">3<" in b and "—" in b
