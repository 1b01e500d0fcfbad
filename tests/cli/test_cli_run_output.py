"""What `erasekit run` tells a person: phases with durations, the report paths, a debug log file;
`compare` explains a missing BenchScore and offers the base model as a row; YAML errors name the
parser's reason and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.toyworld import PIPELINE_DIR

pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("cli_run")
    cfg = {"output_dir": str(tmp / "out"), "batch_size": 2, "compare_to_base": True,
           "technique": {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle"}},
           "metrics": [{"name": "asr_custom", "config": {"prompts": ["a red circle"]}}, {"name": "clip_score", "config": {"limit": 2}}]}
    p = tmp / "c.json"
    p.write_text(json.dumps(cfg))
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["run", str(p), "--no-progress"]) == 0
    return tmp / "out", err.getvalue()


def test_run_prints_phases_and_both_report_paths(toy_run) -> None:
    out, err = toy_run
    for phrase in ("loading base model toy on cpu", "applying technique mace", "erased: preparing asr_custom",
                   "base: scoring clip_score", f"report: {out / 'report.json'}", f"html: {out / 'report.html'}"):
        assert phrase in err, (phrase, err)


def test_run_log_has_the_debug_log(toy_run) -> None:
    out, _ = toy_run
    log = (out / "run.log").read_text()
    assert "DEBUG" in log and "loading base model toy on cpu" in log and "[bold]" not in log


def test_config_used_says_what_ran(toy_run) -> None:
    out, _ = toy_run
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["technique"]["config"]["use_fp16"] is True  # the default as written
    used = report["config_used"]
    assert used["technique"]["config"]["use_fp16"] is False and used["technique"]["config"]["device"] == "cpu"
    assert [m["config"]["clip_model"] for m in used["metrics"]] == ["toy", "toy"]
    assert report["config"]["metrics"][0]["config"]["clip_model"] is None


def test_compare_offers_the_base_model_and_explains_benchscore(toy_run, capsys) -> None:
    out, _ = toy_run
    assert main(["compare", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["technique"] for r in rows] == ["mace", "base model"]
    assert rows[1]["asr_custom"] is not None
    assert rows[0]["safety"] is not None or rows[0]["quality"] is not None
    assert main(["compare", str(out), "--no-base"]) == 0
    captured = capsys.readouterr()
    assert "BenchScore is relative" in captured.err and "one run has none" in captured.err


@pytest.mark.parametrize("command", [["report"], ["compare"]])
def test_report_and_compare_on_a_missing_or_corrupt_report(tmp_path: Path, capsys, command: list[str]) -> None:
    assert main([*command, str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    (tmp_path / "report.json").write_text("{not json")
    assert main([*command, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_yaml_errors_give_the_parsers_reason_and_line(tmp_path: Path, capsys) -> None:
    p = tmp_path / "c.yaml"
    p.write_text('output_dir: "results/x\ntechnique: {name: none}\nmetric: {name: clip_score}\n')
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "found unexpected end of stream" in err and "while scanning a quoted scalar at line 1" in err, err
    p.write_text("output_dir: x\ntechnique:\n  name: none\n   config: {}\n")
    assert main(["validate", str(p)]) == 2
    assert "at line 4, column 10: mapping values are not allowed here" in capsys.readouterr().err
