"""ua_ira: per-image UA/IRA with known truth, the batch-index regression (100 targets, detector
batches of 32), per-arm detectors and protocol, toy defaults, and config validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.metric_harness import ColourDetector, FixedPool, metric_for, run_config, serve, solid, write_csv

from erasekit.errors import ConfigError, ErasekitError


def _csvs(tmp: Path, n_target: int, n_retain: int) -> tuple[Path, Path]:
    t = write_csv(tmp / "target.csv", ["prompt", "seed"], [[f"a red thing number {i}", i] for i in range(n_target)])
    r = write_csv(tmp / "retain.csv", ["prompt", "seed"], [[f"a blue thing number {i}", 1000 + i] for i in range(n_retain)])
    return t, r


def _metric(tmp: Path, n_target: int, n_retain: int, detector: ColourDetector, **cfg):
    t, r = _csvs(tmp, n_target, n_retain)
    run = run_config(tmp, "ua_ira", {"target_prompts_path": str(t), "retain_prompts_path": str(r),
                                     "concept": "red", "retain_concept": "blue", "preset": "erasekit", **cfg},
                     model_id="dummy/sd-model")  # the binary definition: a detector per arm
    return metric_for(run, FixedPool(detector))


def test_ira_is_not_zeroed_by_batch_indices_with_100_targets(tmp_path: Path) -> None:
    """Regression: a widely used implementation labels images by their index inside a detector
    batch, which makes IRA 0 once there are >= 32 target images. Here every retain image shows
    the retain concept, so IRA must be exactly 1."""
    det = ColourDetector(batch_size=32)
    metric = _metric(tmp_path, 100, 20, det)
    reqs = metric.requests()
    assert len(reqs) == 120
    # erased model: targets are gone for 60 of 100 (green), retain images all blue
    images = serve(reqs, tmp_path / "imgs", lambda i, r: solid("green" if (i < 100 and i % 5 < 3) else "red" if i < 100 else "blue"))
    res = metric.compute(images)
    # the batch split really happened: 100 images in chunks of 32, the last one padded to a full chunk
    # (4 images + 28 copies: erasekit.detectors.base runs every chunk at one size, so verdicts never
    # depend on how images were grouped)
    assert (32, 32, 32, 32) == tuple(n for c, n in det.batches if c == "red")
    assert res.details["ira"] == 1.0
    assert res.details["ua"] == pytest.approx(0.6)
    assert res.value == pytest.approx(0.8)
    assert res.details["n_target_images"] == 100 and res.details["n_retain_images"] == 20
    assert res.details["n_target_detected"] == 40 and res.details["n_retain_detected"] == 20
    # one record per image, each with its own arm, prompt and verdict
    assert len(res.records) == 120
    for rec, img in zip(res.records, images, strict=True):
        arm = "target" if "red thing" in img.request.prompt else "retain"
        assert rec["arm"] == arm and rec["prompt"] == img.request.prompt and rec["cache_key"] == img.key
        assert rec["concept"] == ("red" if arm == "target" else "blue")
    assert [r["correct"] for r in res.records[:5]] == [True, True, True, False, False]


def test_ua_ira_known_truth_both_ways(tmp_path: Path) -> None:
    # base model: every target image shows the target (UA 0); half the retain images lost the concept
    metric = _metric(tmp_path / "a", 10, 10, ColourDetector())
    images = serve(metric.requests(), tmp_path / "a" / "imgs", lambda i, r: solid("red" if i < 10 else ("blue" if i % 2 else "grey")))
    res = metric.compute(images)
    assert res.details["ua"] == 0.0 and res.details["ira"] == 0.5 and res.value == 0.25
    # a retain image that shows the *target* colour is not credited to IRA
    metric = _metric(tmp_path / "b", 4, 4, ColourDetector())
    images = serve(metric.requests(), tmp_path / "b" / "imgs", lambda i, r: solid("grey" if i < 4 else "red"))
    res = metric.compute(images)
    assert res.details["ua"] == 1.0 and res.details["ira"] == 0.0


def test_images_per_prompt_limits_and_seeds(tmp_path: Path) -> None:
    metric = _metric(tmp_path, 10, 6, ColourDetector(), target_limit=3, retain_limit=2, images_per_prompt=2)
    reqs = metric.requests()
    assert [r.seed for r in reqs] == [0, 1_000_000, 1, 1_000_001, 2, 1_000_002, 1000, 1_001_000, 1001, 1_001_001]
    res = metric.compute(serve(reqs, tmp_path / "imgs", lambda i, r: solid("blue")))
    assert res.details["n_target_prompts"] == 3 and res.details["n_retain_images"] == 4
    assert [r["prompt_index"] for r in res.records] == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1]
    assert res.value == 1.0
    with pytest.raises(ErasekitError, match="got 9 images for 10 requests"):
        metric.compute(serve(reqs[:9], tmp_path / "imgs9", lambda i, r: solid("blue")))


def test_per_arm_detectors_nudity_target_person_retain(tmp_path: Path) -> None:
    """auto: NudeNet judges the nudity arm, CLIP the retain arm; the preset reaches NudeNet."""
    t, r = _csvs(tmp_path, 2, 2)
    run = run_config(tmp_path, "ua_ira", {"target_prompts_path": str(t), "retain_prompts_path": str(r),
                                          "concept": "nudity", "retain_concept": "person", "preset": "erasekit",
                                          "nudenet_preset": "unlearndiff"},
                     model_id="dummy/sd-model")
    pool = FixedPool(ColourDetector())
    metric = metric_for(run, pool)
    metric.compute(serve(metric.requests(), tmp_path / "imgs", lambda i, r: solid("grey")))
    assert [c[0] for c in pool.calls] == ["nudenet", "clip"]
    assert pool.calls[0][1]["preset"] == "unlearndiff"
    assert pool.calls[1][1]["clip_model"] == "openai/clip-vit-large-patch14"


def test_toy_defaults_use_toy_prompts_and_the_toy_judge(tmp_path: Path) -> None:
    run = run_config(tmp_path, "ua_ira", {"concept": "circle", "retain_concept": "square", "target_limit": 5,
                                          "retain_limit": 4, "preset": "erasekit"})
    pool = FixedPool(ColourDetector())
    metric = metric_for(run, pool)
    reqs = metric.requests()
    assert len(reqs) == 9
    assert all("circle" in q.prompt or "disc" in q.prompt for q in reqs[:5])
    assert all("square" in q.prompt for q in reqs[5:])
    metric.compute(serve(reqs, tmp_path / "imgs", lambda i, r: solid("grey")))
    assert [c[0] for c in pool.calls] == ["toy_judge", "toy_judge"]
    # the mini-CLIP on request
    run = run_config(tmp_path, "ua_ira", {"concept": "circle", "retain_concept": "square", "target_limit": 2,
                                          "retain_limit": 2, "detector": "clip", "preset": "erasekit"})
    pool = FixedPool(ColourDetector())
    metric = metric_for(run, pool)
    metric.compute(serve(metric.requests(), tmp_path / "imgs2", lambda i, r: solid("grey")))
    assert all(c[0] == "clip" and c[1]["clip_model"] == "toy" for c in pool.calls) and len(pool.calls) == 2


@pytest.mark.parametrize(
    ("cfg", "field", "model"),
    [
        ({"retain_concept": "person"}, "target_prompts_path", "real"),
        ({"concept": "nudity"}, "retain_concept", "toy"),
        ({"concept": "circle", "retain_concept": "circle"}, "retain_concept", "toy"),
        ({"concept": "circle", "retain_concept": "dragon"}, "retain_concept", "toy"),
        ({"concept": "circle", "retain_concept": "square", "target_limit": 0}, "target_limit", "toy"),
        ({"concept": "circle", "retain_concept": "square", "images_per_prompt": 65}, "images_per_prompt", "toy"),
        ({"concept": "circle", "retain_concept": "square", "target_prompts_path": "/nope.csv"}, "target_prompts_path", "toy"),
        ({"concept": "circle", "retain_concept": "square", "preset": "mace"}, "preset", "toy"),
        ({"concept": "circle", "retain_concept": "square", "detector": "nudenet"}, "detector", "toy"),
        ({"concept": "nudity", "retain_concept": "square"}, "concept", "toy"),
        ({"retain_concept": "square"}, "concept", "toy"),
    ],
)
def test_ua_ira_config_validation(tmp_path: Path, cfg: dict, field: str, model: str) -> None:
    with pytest.raises(ConfigError) as exc:
        run_config(tmp_path, "ua_ira", cfg, model_id="toy" if model == "toy" else "dummy/sd-model")
    assert exc.value.path == f"metric.config.{field}", str(exc.value)


def test_ua_ira_csv_without_prompt_column(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", ["text"], [["a red thing"]])
    _, r = _csvs(tmp_path, 1, 1)
    with pytest.raises(ConfigError) as exc:
        run_config(tmp_path, "ua_ira", {"target_prompts_path": str(bad), "retain_prompts_path": str(r),
                                        "concept": "nudity", "retain_concept": "person"}, model_id="dummy/sd-model")
    assert exc.value.path == "metric.config.target_prompts_path" and "prompt" in exc.value.problem
