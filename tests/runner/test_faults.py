"""Faults a run must survive honestly: OS errors, a full disk, poisoned checkpoints, stray temp
files, kills between the last two writes — each ends in one line and a report that says what
happened, never a traceback or a report that looks like a result."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from erasekit.cli import main
from erasekit.toyworld import PIPELINE_DIR

pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")


def _write(tmp: Path, **top) -> Path:
    cfg = {"output_dir": str(tmp / "out"), "batch_size": 2,
           "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu", "num_inference_steps": 2}},
           "metric": {"name": "clip_score", "config": {"limit": 2}}, **top}
    p = tmp / "c.json"
    p.write_text(json.dumps(cfg))
    return p


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("erasekit:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert len(lines[0]) <= 600, lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda t: (t / "f").write_text("x") and str(t / "f"), "is not a folder"),
        (lambda t: (t / "f").write_text("x") and str(t / "f" / "sub"), "which is a file"),
        (lambda t: "/proc/erasekit-out", "virtual filesystem"),
        (lambda t: str(t / "a\x00b"), "NUL byte"),
        (lambda t: str(t / ("n" * 300)), "longer than 255"),
    ],
    ids=["file", "under-a-file", "proc", "nul", "too-long"],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_output_dirs_are_config_errors(tmp_path: Path, capsys, make, words: str, command: str) -> None:
    p = _write(tmp_path, output_dir=make(tmp_path))
    assert main([command, str(p)]) == 2
    line = _one_line(capsys)
    assert "config error: output_dir" in line and words in line


def test_read_only_output_dir_is_a_config_error(tmp_path: Path, capsys, monkeypatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    assert main(["validate", str(_write(tmp_path, output_dir=str(ro / "out")))]) == 2
    assert "not writable" in _one_line(capsys)


def test_cache_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "cachefile").write_text("x")
    assert main(["run", str(_write(tmp_path, cache_dir=str(tmp_path / "cachefile")))]) == 2
    assert "config error: cache_dir" in _one_line(capsys)


def test_disk_full_while_writing_images_is_one_line_and_a_crashed_report(tmp_path: Path, capsys, monkeypatch) -> None:
    from erasekit.generation.cache import ImageCache

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ImageCache, "put", full)
    assert main(["run", str(_write(tmp_path))]) == 1
    line = _one_line(capsys)
    assert "No space left on device" in line and "run.log" in line
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "crashed" and "No space left" in report["error"]
    assert "Traceback" in (tmp_path / "out" / "run.log").read_text()


def test_disk_full_for_the_report_too_still_records_the_crash(tmp_path: Path, capsys, monkeypatch) -> None:
    """The crash handler's own atomic save fails on a full disk; it then rewrites report.json in place."""
    import erasekit.runner as runner_mod
    from erasekit.generation.cache import ImageCache

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_json = runner_mod.atomic_write_json
    state = {"images_failed": False}

    def put(*a, **k):
        state["images_failed"] = True
        full()

    def write_json(path, obj):
        if state["images_failed"]:
            full()
        real_json(path, obj)

    monkeypatch.setattr(ImageCache, "put", put)
    monkeypatch.setattr(runner_mod, "atomic_write_json", write_json)
    monkeypatch.setattr(runner_mod, "atomic_write_jsonl", lambda *a, **k: full())
    assert main(["run", str(_write(tmp_path))]) == 1
    assert "No space left on device" in _one_line(capsys)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "crashed" and "No space left" in report["error"]


def test_nan_checkpoint_is_refused_naming_the_tensor(tmp_path: Path, capsys) -> None:
    from erasekit.models.loading import load_base_pipeline

    state = load_base_pipeline("toy").unet.state_dict()
    name = sorted(k for k, v in state.items() if v.is_floating_point())[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    ckpt = tmp_path / "nan.pt"
    torch.save(state, ckpt)
    cfg = json.loads(_write(tmp_path).read_text())
    cfg["technique"] = {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle",
                                                   "load_path": str(ckpt), "num_inference_steps": 2}}
    p = tmp_path / "m.json"
    p.write_text(json.dumps(cfg))
    assert main(["run", str(p)]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["technique"]["status"] == "failed"
    assert "NaN or infinite" in report["technique"]["error"] and name in report["technique"]["error"]
    assert report["metrics"]["clip_score"]["status"] == "skipped"


def test_stray_temp_files_of_a_killed_run_are_swept(tmp_path: Path, capsys) -> None:
    from erasekit.utils.atomic_io import HOST

    metrics = tmp_path / "out" / "metrics"
    metrics.mkdir(parents=True)
    dead = metrics / f".clip_score.json.{HOST}.999999999.abcdef12.tmp"  # pid that cannot exist
    dead.write_text("{")
    live = metrics / f".other.json.{HOST}.{os.getpid()}.abcdef12.tmp"  # a live writer's file stays
    live.write_text("{")
    assert main(["run", str(_write(tmp_path))]) == 0
    assert not dead.exists() and live.exists()


def test_html_is_written_before_the_report_says_ok(tmp_path: Path, capsys, monkeypatch) -> None:
    """A kill between the last two writes must not leave status ok without report.html."""
    import erasekit.report.html as html_mod

    seen = {}
    real = html_mod.write_html

    def spy(run_dir, report=None):
        seen["status_on_disk"] = json.loads((Path(run_dir) / "report.json").read_text())["status"]
        return real(run_dir, report)

    monkeypatch.setattr(html_mod, "write_html", spy)
    assert main(["run", str(_write(tmp_path))]) == 0
    assert seen["status_on_disk"] == "running"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"] == "ok"
    assert "ok" in (tmp_path / "out" / "report.html").read_text()
