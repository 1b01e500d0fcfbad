"""Multi-process generation with torchrun (gloo on CPU): same numbers, each image made once.

Runs the real CLI under ``python -m torch.distributed.run --nproc_per_node 2`` on the toy
world and compares with a single-process run of the same config (separate caches, so
both really generate). A second test kills one rank mid-generation and reruns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from erasekit.toyworld import PIPELINE_DIR

pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a circle", "a square"]


def _config(root: Path, name: str, batch_size: int = 2) -> Path:
    cfg = {
        "output_dir": str(root / name),
        "cache_dir": str(root / f"{name}_cache"),
        "batch_size": batch_size,
        "technique": {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle"}},
        "metrics": [
            {"name": "asr_custom", "config": {"prompts": PROMPTS, "images_per_prompt": 3}},
            {"name": "clip_score", "config": {"limit": 12}},
        ],
    }
    p = root / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return p


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MASTER_ADDR="127.0.0.1")
    return env


def _torchrun(cfg: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
            "-m", "erasekit", "run", str(cfg), "--no-progress"]


def _values(out: Path) -> dict[str, float]:
    r = json.loads((out / "report.json").read_text())
    assert r["status"] == "ok", r
    return {k: m["value"] for k, m in r["metrics"].items()}


def _sidecar_ranks(cache: Path, keys: set[str]) -> dict[str, int]:
    out = {}
    for k in keys:
        meta = json.loads((cache / "images" / k[:2] / f"{k}.json").read_text())
        out[k] = meta["generated_by_rank"]
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("single")
    cfg = _config(root, "single")
    res = subprocess.run([sys.executable, "-m", "erasekit", "run", str(cfg), "--no-progress"], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "single"


def test_two_ranks_match_single_process_and_generate_each_image_once(tmp_path, single_run) -> None:
    cfg = _config(tmp_path, "multi")
    res = subprocess.run(_torchrun(cfg, 29511), env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "multi"
    assert _values(out) == _values(single_run)
    report = json.loads((out / "report.json").read_text())
    assert report["distributed"]["world_size"] == 2
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    keys = {r["cache_key"] for r in records}
    ranks = _sidecar_ranks(tmp_path / "multi_cache", keys)
    per_rank = [sum(1 for v in ranks.values() if v == r) for r in (0, 1)]
    assert per_rank[0] > 0 and per_rank[1] > 0, per_rank  # both ranks worked
    by_rank = report["images"]["generated_by_rank"]["erased"]
    assert by_rank == per_rank  # what each rank reports generating is what the cache says it wrote
    assert sum(by_rank) == len(keys) == report["images"]["unique"] == report["images"]["generated"]
    # the per-image records are the same as the single-process run's
    single = [json.loads(line) for line in (single_run / "records.jsonl").read_text().splitlines()]
    assert sorted(json.dumps(r, sort_keys=True) for r in records) == sorted(json.dumps(r, sort_keys=True) for r in single)


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def test_killed_rank_then_rerun_completes_from_cache(tmp_path, single_run) -> None:
    cfg = _config(tmp_path, "killed")  # same batch size as the reference run: images are bit-identical
    cache = tmp_path / "killed_cache" / "images"
    proc = subprocess.Popen(_torchrun(cfg, 29512), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list(cache.rglob("*.png"))) < 3:
            time.sleep(0.2)
        assert len(list(cache.rglob("*.png"))) >= 3, "generation never started"
        victims = [p for p in _children(proc.pid) if _rank_of(p) == 1]
        assert victims, "rank 1 process not found"
        os.kill(victims[0], signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # the launcher reports the failed rank
    report = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert report["status"] != "ok"  # no partial report claiming success
    made_before = len(list(cache.rglob("*.png")))
    res = subprocess.run(_torchrun(cfg, 29513), env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _values(tmp_path / "killed") == _values(single_run)
    report = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert report["images"]["reused"] >= made_before - 1  # finished images were not regenerated


# ------------------------------------------------------------------ attacks split across ranks

ATTACK_TARGETS = ["a red circle", "a blue circle", "a green circle", "a yellow circle"]


def _attack_config(root: Path, name: str) -> Path:
    cfg = {
        "output_dir": str(root / name),
        "cache_dir": str(root / f"{name}_cache"),
        "batch_size": 2,
        "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu"}},
        "metric": {"name": "asr_ring_a_bell", "config": {"concept": "circle", "prompts": ATTACK_TARGETS, "images_per_prompt": 2,
                                                         "attack": {"population": 16, "generations": 15}}},
    }
    p = root / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return p


def test_two_ranks_attack_each_target_once_and_match_single_process(tmp_path) -> None:
    single = subprocess.run([sys.executable, "-m", "erasekit", "run", str(_attack_config(tmp_path, "single")), "--no-progress"],
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    res = subprocess.run(_torchrun(_attack_config(tmp_path, "multi"), 29514), env=_env(), capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _values(tmp_path / "multi") == _values(tmp_path / "single")
    entries = [json.loads(p.read_text()) for p in (tmp_path / "multi_cache" / "attacks").glob("*/*.json")]
    assert sorted(e["key"]["target"] for e in entries) == sorted(ATTACK_TARGETS)  # one cache entry per target
    assert sorted(e["written_by_rank"] for e in entries) == [0, 0, 1, 1]  # each rank computed its share
    d = json.loads((tmp_path / "multi" / "report.json").read_text())["metrics"]["asr_ring_a_bell"]["details"]
    assert d["attacks_computed"] == 2 and d["attack_cache_hits"] == 2  # rank 0: its two, then the other rank's two
    assert d["attack_steps_run"] == 2 * 15
