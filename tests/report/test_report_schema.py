"""report.json has a typed schema (erasekit.report.schema): a real run's report round-trips
through it unchanged, partial and old reports load, and a missing/broken one is one line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.errors import ErasekitError
from erasekit.report.schema import MetricEntry, Report, ReportError, class_describe, load_report, metric_class

# Every key the runner wrote before the schema existed (readers index report.json by these).
TOP_KEYS = {"erasekit_version", "run_id", "status", "started_at", "finished_at", "config", "paths", "model",
            "technique", "seeds", "sampler", "images", "metrics", "timings", "versions", "distributed"}
ENTRY_KEYS = {"name", "status", "value", "details", "seconds"}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("toy_run")
    cfg = {
        "output_dir": str(root / "out"),
        "seed": 0,
        "compare_to_base": False,
        "technique": {"name": "mace", "config": {"model_id": "toy", "erase_concept": "circle", "device": "cpu"}},
        "metrics": [{"name": "asr_custom", "config": {"prompts": ["a red circle"], "images_per_prompt": 1}}],
    }
    path = root / "config.json"
    path.write_text(json.dumps(cfg))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--no-progress"])
    return {"code": code, "out": root / "out", "stderr": err.getvalue()}


def test_real_report_round_trips_unchanged(toy_run) -> None:
    assert toy_run["code"] == 0, toy_run["stderr"]
    raw = json.loads((toy_run["out"] / "report.json").read_text())
    assert TOP_KEYS <= set(raw)
    report = load_report(toy_run["out"])
    assert isinstance(report, Report) and report.status == "ok"
    assert report.to_json_dict() == raw  # same keys, same values: nothing added, nothing dropped
    entry = report.metrics["asr_custom"]
    assert ENTRY_KEYS <= set(raw["metrics"]["asr_custom"])
    assert entry.status == "ok" and isinstance(entry.value, float)
    assert "base_value" not in raw["metrics"]["asr_custom"] and not report.has_base  # no base model evaluated
    assert load_report(toy_run["out"] / "report.json") == report  # the file itself works too


def test_entry_carries_the_metric_declaration(toy_run) -> None:
    raw = json.loads((toy_run["out"] / "report.json").read_text())["metrics"]["asr_custom"]
    declared = class_describe(metric_class("asr_custom"))
    if "group" not in declared:
        pytest.skip("asr_custom does not declare its direction/group yet")
    assert raw["higher_is_better"] == declared["higher_is_better"]
    assert raw["group"] == declared["group"]
    assert raw["benchscore"] == declared["benchscore"]
    per_metric = json.loads((toy_run["out"] / "metrics" / "asr_custom.json").read_text())
    assert per_metric["group"] == declared["group"] and per_metric["value"] == raw["value"]


def test_run_prints_report_paths(toy_run) -> None:
    err = toy_run["stderr"]
    assert str(toy_run["out"] / "report.json") in err
    assert str(toy_run["out"] / "report.html") in err


def test_html_shows_direction_and_group(toy_run) -> None:
    page = (toy_run["out"] / "report.html").read_text()
    assert "<th>direction</th>" in page and "<th>group</th>" in page
    if "group" in class_describe(metric_class("asr_custom")):
        assert "lower is better" in page or "higher is better" in page


def test_partial_old_and_future_reports_load() -> None:
    crashed = Report.model_validate({"status": "crashed", "error": "RuntimeError: boom",
                                     "metrics": {"asr_custom": {"status": "pending"}}})
    assert crashed.metrics["asr_custom"].value is None and crashed.technique.status == "pending"
    assert crashed.to_json_dict() == {"status": "crashed", "error": "RuntimeError: boom", "metrics": {"asr_custom": {"status": "pending"}}}
    future = {"metrics": {"m": {"status": "ok", "value": 1.5, "new_key": [1, 2]}}, "new_top": {"a": 1}}
    assert Report.model_validate(future).to_json_dict() == future  # unknown keys survive a round trip
    assert MetricEntry.model_validate({"status": "ok", "value": 2, "base_status": "failed"}).has_base


def test_missing_or_broken_report_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(ReportError) as e:
        load_report(tmp_path)
    assert isinstance(e.value, ErasekitError) and "no report.json" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="must be an object"):
        load_report(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no report.json" in err and "Traceback" not in err
