"""The ``erasekit`` command line, run in-process (``erasekit.cli.main``): what a user sees.

Every config validation rule is tested in tests/config/test_config_validation.py; this file
checks the commands themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erasekit import __version__
from erasekit.cli import main
from erasekit.registry import METRICS, TECHNIQUES, load_builtins

REPO = Path(__file__).resolve().parents[2]


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"erasekit {__version__}"


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage:" in out and "validate" in out and "run" in out


def test_validate_quickstart(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)  # the quickstart's prompt CSVs are relative to the repository root
    assert main(["validate", "examples/quickstart.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK examples/quickstart.yaml")


def test_validate_bad_config_is_one_line_on_stderr(tmp_path: Path, capsys) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "technique": {"name": "none", "config": {"model_id": "toy"}},
                             "metric": {"name": "clip_score", "config": {"limit": -3}}}))
    assert main(["validate", str(p)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "OK" not in captured.out
    assert len(err.splitlines()) == 1, err
    assert err.startswith("erasekit: config error: metric.config.limit:"), err


def test_list_shows_every_technique_and_metric(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    load_builtins()
    lines = out.splitlines()
    for section in ("techniques:", "metrics:", "detectors:", "presets:"):
        assert section in lines
    names = {line.split()[0] for line in lines if line.startswith("  ")}
    assert set(METRICS.names()) <= names and set(TECHNIQUES.names()) <= names
    assert {"asr_i2p", "asr_custom", "err", "fid", "clip_score", "ua_ira", "tifa", "mma_diffusion"} <= names
