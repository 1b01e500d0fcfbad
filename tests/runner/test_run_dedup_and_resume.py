"""Generation through the real runner and CLI (`erasekit run`), on a tiny SD-shaped folder.

- two metrics sharing half their prompts: each unique image generated once, and a
  second run generates nothing and reports identical values and per-image records;
- a run killed with SIGKILL mid-generation and started again gives the report of an
  uninterrupted run, and leaves no temp file or corrupt PNG.
The same checks on the trained toy world run when its weights are present.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from support.e2e_metrics import register, unregister

from erasekit.cli import main
from erasekit.generation import ImageCache

TESTS = Path(__file__).resolve().parents[1]

VOLATILE = {"started_at", "finished_at", "timings", "throughput", "seconds", "generated", "reused", "generated_by_rank", "paths", "output_dir", "cache_dir"}


@pytest.fixture
def e2e_metrics():
    register()
    yield
    unregister()


def _stable(obj):
    """The report without what legitimately differs between two runs of one config:
    wall-clock times, where files are, and how many images came from the cache."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _write_config(path: Path, out: Path, model_id: str, metrics: list[dict], cache_dir: Path | None = None, **extra) -> Path:
    tech = {"model_id": model_id, "device": "cpu", "num_inference_steps": 2}
    cfg = {"output_dir": str(out), "technique": {"name": "none", "config": tech}, "metrics": metrics, **extra}
    if cache_dir is not None:
        cfg["cache_dir"] = str(cache_dir)
    path.write_text(json.dumps(cfg))
    return path


def _read(out: Path):
    report = json.loads((out / "report.json").read_text())
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return report, records


def _assert_cache_clean(cache: Path) -> None:
    assert not list(cache.rglob("*.tmp")), "temp files left behind"
    c = ImageCache(cache)
    for png in cache.rglob("*.png"):
        with Image.open(png) as im:
            im.load()
        assert c.get(png.stem) == png, f"invalid cache entry {png.name}"


def _model_ids():
    from erasekit.toyworld import PIPELINE_DIR

    toy = pytest.param(
        "toy",
        marks=pytest.mark.skipif(not (Path(PIPELINE_DIR) / "model_index.json").exists(), reason="toy weights not trained yet"),
    )
    return ["tiny", toy]


@pytest.mark.parametrize("model", _model_ids())
def test_two_metrics_sharing_half_then_second_run_generates_nothing(tmp_path, tiny_sd_dir, e2e_metrics, model, capsys):
    model_id = str(tiny_sd_dir) if model == "tiny" else "toy"
    metrics = [{"name": "t_gen_a", "config": {"n": 6, "offset": 0}}, {"name": "t_gen_b", "config": {"n": 6, "offset": 3}}]
    cfg = _write_config(tmp_path / "cfg.json", tmp_path / "out", model_id, metrics, batch_size=4)
    assert main(["run", str(cfg), "--no-progress"]) == 0
    first, rec1 = _read(tmp_path / "out")
    img = first["images"]
    assert (img["requested"], img["unique"], img["generated"], img["reused"]) == (12, 9, 9, 0)
    assert len(list((tmp_path / "out" / "cache").rglob("*.png"))) == 9

    assert main(["run", str(cfg), "--no-progress"]) == 0
    second, rec2 = _read(tmp_path / "out")
    img = second["images"]
    assert (img["requested"], img["unique"], img["generated"], img["reused"]) == (12, 9, 0, 9)
    assert _stable(second) == _stable(first)
    assert rec2 == rec1 and len(rec1) == 12
    assert second["metrics"]["t_gen_a"]["value"] == first["metrics"]["t_gen_a"]["value"]


def test_metric_field_change_reuses_every_image(tmp_path, tiny_sd_dir, e2e_metrics, capsys):
    base = {"name": "t_gen_a", "config": {"n": 4}}
    cfg = _write_config(tmp_path / "a.json", tmp_path / "out", str(tiny_sd_dir), [base], cache_dir=tmp_path / "cache")
    assert main(["run", str(cfg), "--no-progress"]) == 0
    changed = {"name": "t_gen_a", "config": {"n": 4, "label": "other", "device": "cpu"}}
    cfg = _write_config(tmp_path / "b.json", tmp_path / "out2", str(tiny_sd_dir), [changed], cache_dir=tmp_path / "cache")
    assert main(["run", str(cfg), "--no-progress"]) == 0
    report, _ = _read(tmp_path / "out2")
    assert (report["images"]["generated"], report["images"]["reused"]) == (0, 4)
    # a technique field change makes new images
    cfg = json.loads(cfg.read_text())
    cfg["technique"]["config"]["num_inference_steps"] = 3
    cfg["output_dir"] = str(tmp_path / "out3")
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    assert main(["run", str(tmp_path / "c.json"), "--no-progress"]) == 0
    report, _ = _read(tmp_path / "out3")
    assert (report["images"]["generated"], report["images"]["reused"]) == (4, 0)


@pytest.mark.slow  # a cold `erasekit run` subprocess twice (diffusers import): ~20-40 s on 2 busy cores
def test_run_killed_mid_generation_resumes_to_the_uninterrupted_report(tmp_path, tiny_sd_dir, e2e_metrics, capsys):
    n = 60
    metrics = [{"name": "t_gen_a", "config": {"n": n, "offset": 0}}, {"name": "t_gen_b", "config": {"n": n // 2, "offset": n // 4}}]
    killed_out, ref_out = tmp_path / "killed", tmp_path / "ref"
    cfg = _write_config(tmp_path / "k.json", killed_out, str(tiny_sd_dir), metrics, batch_size=2)
    seed = int(os.environ.get("ERASEKIT_KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    kill_after, jitter_s = rng.randint(1, n // 2), rng.uniform(0, 0.05)
    print(f"kill seed {seed}: after {kill_after} committed images + {jitter_s * 1000:.0f} ms")

    cmd = [sys.executable, str(TESTS / "support" / "e2e_cli.py"), "run", str(cfg), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    cache = killed_out / "cache"
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 240
        while len(list(cache.glob("images/*/*.json"))) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(jitter_s)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = len(list(cache.glob("images/*/*.json")))
    assert 1 <= done < n, f"kill landed outside generation ({done} images committed)"
    partial = json.loads((killed_out / "report.json").read_text())
    assert partial["status"] == "running"  # the report on disk says the run did not finish

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert main(["run", str(_write_config(tmp_path / "r.json", ref_out, str(tiny_sd_dir), metrics, batch_size=2)), "--no-progress"]) == 0

    got, got_rec = _read(killed_out)
    want, want_rec = _read(ref_out)
    assert _stable(got) == _stable(want)
    assert got_rec == want_rec
    assert got["images"]["reused"] == done and got["images"]["generated"] == n - done
    assert want["images"]["generated"] == want["images"]["unique"] == n
    _assert_cache_clean(cache)
    pngs = sorted(p.relative_to(cache) for p in cache.rglob("*.png"))
    assert pngs == sorted(p.relative_to(ref_out / "cache") for p in (ref_out / "cache").rglob("*.png"))
    for rel in pngs:
        assert (cache / rel).read_bytes() == (ref_out / "cache" / rel).read_bytes()
