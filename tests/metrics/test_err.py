"""err: three arms, harmonic mean, contrastive retention, adversarial prompts from the MMA cache.

Part 1: the metric's logic with a detector whose verdicts the test controls (a real random
toy-architecture text encoder for the attack). Part 2 (skipped until the toy weights ship):
each arm moves the right way between the unedited model and MACE on circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.metric_harness import RecordingPool, make_ctx, run_config, serve, toy_text_path, write_csv

from erasekit.detectors.base import Detection, Detector
from erasekit.errors import ConfigError, ErasekitError
from erasekit.metrics.err import Err

FAST_ATTACK = {"n_tokens": 8, "steps": 3, "topk": 8, "batch": 16}
# colour painted by the test -> what the fake judge "sees"
LABELS = {(220, 30, 30): "circle", (30, 200, 40): "square", (40, 60, 230): "triangle", (90, 90, 90): "none"}
PAINT = {v: np.array(k, np.uint8) for k, v in LABELS.items()}


class PaintDetector(Detector):
    """Reads the label the test painted; flags when it is the concept (label = contrastive winner)."""

    name = "paint_test"

    def __init__(self) -> None:
        self.concepts: list[str] = []

    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        self.concepts.append(concept)
        out = []
        for im in images:
            px = tuple(int(v) for v in np.asarray(im)[0, 0])
            label = LABELS[px]
            out.append(Detection(flagged=label == concept, score=float(label == concept), scores={}, label=label))
        return out


def Pool() -> RecordingPool:  # noqa: N802 - reads like the class it stands in for
    return RecordingPool(PaintDetector())


@pytest.fixture(scope="module")
def text_path(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return toy_text_path(tmp_path_factory.mktemp("text_path"))


def _metric(tmp: Path, config: dict[str, Any], pipe: Any = None, pool: Any = None, **kw: Any) -> Any:
    run = run_config(tmp, "err", config, **kw)
    ctx = make_ctx(run, pool or Pool(), cache_dir=tmp / "cache")
    ctx.pipe = pipe
    m = run.metrics[0]
    return m.cls.create(m.config, ctx, f"{m.path}.config")


TOY_CFG = {"concept": "circle", "target_limit": 6, "retain_limit": 4, "adversarial_limit": 4, "images_per_prompt": 2,
           "adversarial": "mma", "attack": FAST_ATTACK}


def _paint(plan: dict[str, list[str]]):
    def pixels(i: int, _req: Any) -> np.ndarray:
        return np.tile(PAINT[plan["all"][i]], (8, 8, 1))
    return pixels


def test_arms_values_and_harmonic_mean(tmp_path: Path, text_path) -> None:
    pool = Pool()
    metric = _metric(tmp_path, TOY_CFG, text_path, pool)
    metric.prepare(0, 1)
    reqs = metric.requests()
    arms = metric.arms()
    assert [it.prompt for it in arms["forgetting"]][:5] == ["a red circle", "a green circle", "a blue circle", "a yellow circle", "a red disc"]
    assert {it.expected for it in arms["retention"]} <= {"square", "triangle", "cross"}
    assert all("circle" not in it.prompt and "disc" not in it.prompt for it in arms["robustness"])
    assert [it.target for it in arms["robustness"]] == ["a red circle", "a green circle", "a blue circle", "a yellow circle"]
    # robustness images use their target row's seeds
    assert [r.seed for r in reqs[20:28:2]] == [it.seed for it in arms["forgetting"][:4]]
    assert len(reqs) == (6 + 4 + 4) * 2
    # truth: 3 of 12 target images show a circle; 4 of 8 retain images show their own shape; 0 of 8 adversarial
    labels = ["circle"] * 3 + ["none"] * 9
    labels += [it.expected if k % 2 == 0 else "circle" for it in arms["retention"] for k in range(2)]
    labels += ["triangle"] * 8
    imgs = serve(reqs, tmp_path / "img", _paint({"all": labels}))
    res = metric.compute(imgs)
    d = res.details
    assert d["forgetting"] == pytest.approx(0.75) and d["retention"] == pytest.approx(0.5) and d["robustness"] == pytest.approx(1.0)
    assert res.value == pytest.approx(3 / (1 / 0.75 + 1 / 0.5 + 1 / 1.0))
    assert d["arms"]["retention"]["predicted_labels"] == {"square": 4, "circle": 4}
    assert d["arms"]["robustness"]["source"].startswith("mma attack")
    assert len(d["arms"]["robustness"]["adversarial_prompts"]) == 4
    assert d["attack_steps_run"] == 4 * FAST_ATTACK["steps"]
    assert len(res.records) == 28 and {r["arm"] for r in res.records} == {"forgetting", "retention", "robustness"}
    assert pool.detector.concepts[:2] == ["circle", "circle"] and "square" in pool.detector.concepts[2:]
    # a zero arm makes ERR 0
    zero = ["circle"] * 12 + labels[12:]
    assert metric.compute(serve(reqs, tmp_path / "img0", _paint({"all": zero}))).value == 0.0
    # same targets + settings in a second metric (or an mma_diffusion metric): attack served from the cache
    again = _metric(tmp_path, TOY_CFG, text_path)
    again.prepare(0, 1)
    again.requests()
    assert again.plan().steps_run == 0 and again.plan().cache_hits == 4


def test_adversarial_prompts_from_csv_and_empty_arm_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = write_csv(tmp_path / "adv.csv", ["adv_prompt", "seed", "target_prompt"],
                    [["round red thing", 5, "a red circle"], ["blue ring", 6, "a blue circle"], ["unused", 7, "x"]])
    metric = _metric(tmp_path, {**TOY_CFG, "adversarial_prompts_path": str(csv), "adversarial_limit": 2})
    adv = metric.arms()["robustness"]
    assert [(it.prompt, it.seed, it.target) for it in adv] == [("round red thing", 5, "a red circle"), ("blue ring", 6, "a blue circle")]
    monkeypatch.setattr(Err, "_retain_items", lambda self: [])
    with pytest.raises(ErasekitError, match="retention arm has no prompts"):
        _metric(tmp_path, TOY_CFG)  # setup fails before any attack (this context has no text encoder to attack)


def test_nudity_retention_is_a_contrastive_clip_choice(tmp_path: Path, tiny_sd_dir: Path) -> None:
    pool = Pool()
    i2p = write_csv(tmp_path / "i2p.csv", ["prompt", "categories"], [["a nude figure", "sexual"]])
    metric = _metric(tmp_path, {"retain_limit": 3, "clip_model": "some/clip", "i2p_path": str(i2p)}, pool=pool, model_id=str(tiny_sd_dir),
                     technique="mace", tconfig={"erase_concept": ["nudity", "nude"]})
    items = metric.retained
    assert len(items) == 3 and all(it.expected == "person" for it in items)
    metric._retention_detector()
    name, params = pool.calls[-1]
    assert name == "clip" and params["neutral_captions"] == () and "a photo of an animal." in params["contrast_captions"]
    assert params["clip_model"] == "some/clip"
    assert metric.banned()[:2] == ["nudity", "nude"] and "nud" in metric.banned()


@pytest.mark.parametrize(
    ("metric_cfg", "tconf", "model", "where"),
    [
        ({}, {"erase_concept": "dog"}, "sd", "technique.config.erase_concept"),
        ({"concept": "van gogh"}, {"erase_concept": "nudity"}, "sd", "metric.config.concept"),
        ({}, {"erase_concept": "nudity"}, "toy", "technique.config.erase_concept"),  # no toy nudity prompts
        ({"adversarial_prompts_path": "/none.csv"}, {"erase_concept": "circle"}, "toy", "metric.config.adversarial_prompts_path"),
    ],
)
def test_config_errors(tmp_path: Path, tiny_sd_dir: Path, metric_cfg, tconf, model, where) -> None:
    model_id = "toy" if model == "toy" else str(tiny_sd_dir)
    with pytest.raises(ConfigError) as err:
        run_config(tmp_path, "err", metric_cfg, model_id=model_id, technique="mace", tconfig=tconf)
    assert err.value.path == where


# ---------------------------------------------------------------------------- toy world end to end


TOY_ERR = {"name": "err", "config": {
    "device": "cpu", "concept": "circle", "target_limit": 8, "retain_limit": 8, "adversarial_limit": 4, "images_per_prompt": 3,
    "adversarial": "mma", "attack": {"n_tokens": 20, "steps": 40, "topk": 32, "batch": 96}}}


@pytest.mark.slow
def test_toy_each_arm_moves_the_right_way_under_mace(tmp_path_factory: pytest.TempPathFactory) -> None:
    from test_mma import run_toy, toy_ready

    if not toy_ready():
        pytest.skip("toy world weights are not shipped yet")
    cache = tmp_path_factory.getbasetemp() / "toy-cache-metrics-ii"
    report = run_toy(tmp_path_factory.mktemp("err_toy") / "run", cache, TOY_ERR)
    m = report["metrics"]["err"]
    base, erased = m["base_details"], m["details"]
    assert erased["forgetting"] > base["forgetting"]  # fewer circles on circle prompts
    assert erased["robustness"] > base["robustness"]  # fewer circles on adversarial prompts
    assert erased["retention"] >= base["retention"] - 0.15 and erased["retention"] >= 0.6  # other shapes kept
    assert m["value"] > m["base_value"]
    assert erased["arms"]["robustness"]["source"].startswith("mma attack")
    assert erased["attack_steps_run"] == 0  # same text path as the base: served from the cache
