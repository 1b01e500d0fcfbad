"""The README's Python API example runs as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import erasekit
from erasekit.errors import ConfigError
from erasekit.toyworld import PIPELINE_DIR

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")


def test_readme_python_example_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    text = (REPO / "README.md").read_text()
    code = re.search(r"<!-- python-api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    assert "ASR " in capsys.readouterr().out
    assert (tmp_path / "results" / "api_example" / "report.html").is_file()


def test_api_surface_and_errors(tmp_path: Path) -> None:
    assert set(erasekit.__all__) == {"__version__", "run", "validate", "load_report"}
    with pytest.raises(ConfigError, match="metric.config.limit"):
        erasekit.validate({"output_dir": str(tmp_path), "technique": {"name": "none", "config": {"model_id": "toy"}},
                           "metric": {"name": "clip_score", "config": {"limit": 0}}})


def test_run_accepts_a_config_model_and_shows_phases_on_a_terminal(tmp_path: Path) -> None:
    """A pydantic RunConfig is a config too; with progress on a terminal each phase gets a spinner
    and its duration (a plain line, and in run.log, otherwise)."""
    import io

    from rich.console import Console

    from erasekit.config import RunConfig
    from erasekit.runner import run as run_pipeline

    cfg = RunConfig.model_validate({"output_dir": str(tmp_path / "out"), "batch_size": 2,
                                    "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu"}},
                                    "metric": {"name": "clip_score", "config": {"limit": 2}}})
    resolved = erasekit.validate(cfg)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    outcome = run_pipeline(resolved, show_progress=True, console=console)
    assert outcome.exit_code == 0
    shown = buf.getvalue()
    assert "loading base model toy on cpu" in shown and "scoring clip_score" in shown
