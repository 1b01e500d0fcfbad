"""Overlap: PNG writes and judging beside generation change when work happens, never a byte or a number."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from erasekit.cli import main
from erasekit.generation import ImageRequest
from erasekit.generation.cache import ImageCache

REQS = [ImageRequest(prompt=f"a photo {i % 3}", seed=i) for i in range(7)]


def _digests(images) -> list[str]:
    return [hashlib.sha256(Path(im.path).read_bytes()).hexdigest() for im in images]


def test_engine_writes_the_same_bytes_with_and_without_overlap(make_generator, tmp_path):
    seen: list[list[str]] = []
    with_overlap, stats = make_generator(tmp_path / "a", batch_size=3, overlap=True,
                                         on_batch=lambda done: seen.append([c.key for c in done])).generate(REQS)
    without, _ = make_generator(tmp_path / "b", batch_size=3, overlap=False).generate(REQS)
    assert _digests(with_overlap) == _digests(without)
    assert [len(b) for b in seen] == [3, 3, 1]  # every batch reported once, in order, once committed
    assert [k for b in seen for k in b] == [im.key for im in with_overlap]
    assert stats.generated == 7 and stats.write_seconds > 0 and stats.pipe_seconds > 0
    for b in seen:  # reported only after the sidecar (the commit marker) exists
        assert all(ImageCache(tmp_path / "a").get(k) is not None for k in b)


def test_a_failed_write_stops_generation_and_keeps_what_was_committed(make_generator, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_put = ImageCache.put

    def put(self, key, image, meta):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real_put(self, key, image, meta)

    monkeypatch.setattr(ImageCache, "put", put)
    gen = make_generator(tmp_path / "c", batch_size=2, overlap=True)
    with pytest.raises(OSError, match="disk full"):
        gen.generate(REQS)
    monkeypatch.setattr(ImageCache, "put", real_put)
    _, stats = make_generator(tmp_path / "c", batch_size=2, overlap=True).generate(REQS)
    assert stats.reused >= 4 and stats.generated == 7 - stats.reused  # the committed images were kept


def test_judging_is_the_same_in_any_order_and_chunking(tmp_path, make_generator):
    """Remembered verdicts run in fixed, padded chunks: a verdict depends on the image alone."""
    from erasekit.detectors.toy_judge import ToyJudgeDetector

    images, _ = make_generator(tmp_path / "d", batch_size=4).generate(
        [ImageRequest(prompt=f"p{i}", seed=i) for i in range(20)])
    once = ToyJudgeDetector().detect_cached(images, "circle")
    other = ToyJudgeDetector()
    assert other.prefetch(images[13:], "circle") == 0  # 7 < one chunk of 16: waits
    assert other.prefetch(images[:11], "circle") == 16  # a full chunk now
    again = other.detect_cached(list(reversed(images)), "circle")[::-1]
    assert [d.scores for d in once] == [d.scores for d in again]
    assert other.throughput()["images"] == 20 and other.throughput()["padded"] == 12


def _toy_run(tmp_path: Path, name: str, **extra) -> dict:
    cfg = {"output_dir": str(tmp_path / name), "cache_dir": str(tmp_path / f"cache_{name}"), "batch_size": 4,
           "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu"}},
           "metrics": [{"name": "asr_custom", "config": {"prompts": ["a red circle", "a blue square", "a circle"],
                                                         "images_per_prompt": 8, "concept": "circle"}},
                       {"name": "asr_i2p", "config": {"limit": 4, "concept": "circle"}}], **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    assert main(["run", str(path), "--no-progress"]) == 0
    return json.loads((tmp_path / name / "report.json").read_text())


def _records(tmp_path: Path, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (tmp_path / name / "records.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "path"} for r in rows]


def test_a_run_with_overlap_gives_the_same_images_and_numbers_as_without(tmp_path, monkeypatch):
    import erasekit.prefetch

    monkeypatch.setattr(erasekit.prefetch, "SCORE_BESIDE_GENERATION_ON_CPU", True)  # the accelerator path, on this CPU
    on = _toy_run(tmp_path, "on")
    off = _toy_run(tmp_path, "off", overlap=False)
    assert _records(tmp_path, "on") == _records(tmp_path, "off")
    assert {k: m["value"] for k, m in on["metrics"].items()} == {k: m["value"] for k, m in off["metrics"].items()}
    assert on["run_id"] == off["run_id"]  # overlap is not part of the run's identity
    pngs = {p.name: p.read_bytes() for p in (tmp_path / "cache_on").rglob("*.png")}
    assert pngs and pngs == {p.name: p.read_bytes() for p in (tmp_path / "cache_off").rglob("*.png")}
    assert on["timings"]["prefetch_scoring_seconds"] > 0 and off["timings"]["prefetch_scoring_seconds"] == 0
    tp = on["throughput"]
    assert tp["generation"]["erased"]["images"] == on["images"]["generated"] > 20 and tp["generation"]["erased"]["images_per_s"] > 0
    assert tp["detectors"] and all(d["images_per_s"] > 0 for d in tp["detectors"])
    assert set(tp["time_split"]) >= {"load", "technique", "attack", "generation", "scoring", "report"}


def test_compiled_unet_stays_within_one_grey_level(tmp_path):
    """``compile: true`` keeps the image keys, so compiled images must match eager ones within a stated
    tolerance: measured on this CPU (toy UNet, inductor), at most 1 grey level on under 0.1 % of values."""
    from erasekit.generation.sampling import sample
    from erasekit.toyworld import load_pipeline

    pipe = load_pipeline()
    pipe.set_progress_bar_config(disable=True)

    def draw():
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        out = sample(pipe, ["a red circle", "a blue square"], ["", ""], steps=4, guidance=4.0, height=32, width=32,
                     generators=gens)
        return np.stack([np.asarray(im) for im in out]).astype(int)

    eager = draw()
    pipe.unet.compile()
    compiled = draw()
    assert np.abs(compiled - eager).max() <= 1
    assert (compiled != eager).mean() < 1e-3


def test_remembered_verdicts_are_kept_apart_by_every_decision_parameter(make_generator, tmp_path):
    """Detectors derived by copy (as DetectorPool.derive does) share the memo dictionary; a parameter
    that changes the verdict must keep their entries apart even when protocol() does not name it."""
    import copy

    from erasekit.detectors.base import Detection, Detector

    class Brightness(Detector):
        name = "brightness"
        batch_size = 4

        def __init__(self, cut: float) -> None:
            self.cut = cut

        def detect(self, images, concept):
            return [Detection(flagged=float(np.asarray(im).mean()) > self.cut, score=float(np.asarray(im).mean()))
                    for im in images]

    images, _ = make_generator(tmp_path / "e", batch_size=4).generate([ImageRequest(prompt=f"q{i}", seed=i) for i in range(6)])
    low = Brightness(cut=-1.0)
    high = copy.copy(low)
    high.cut = 1e9
    assert all(d.flagged for d in low.detect_cached(images, "x"))
    assert not any(d.flagged for d in high.detect_cached(images, "x"))
