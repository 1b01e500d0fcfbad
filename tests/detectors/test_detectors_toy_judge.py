"""Toy judge detector: decision rule on synthetic judge outputs, and the real module on a judge folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasekit.detectors import DetectorPool, ToyJudgeDetector, decide_judge, toy_concept
from erasekit.errors import ErasekitError, ModelNotFoundError
from erasekit.toyworld.judge import SHAPE_CLASSES, JudgeOutput


def out(shape: str, sconf: float, colour: str = "red", cconf: float = 0.9) -> JudgeOutput:
    rest = (1 - sconf) / (len(SHAPE_CLASSES) - 1)
    sp = {k: (sconf if k == shape else rest) for k in SHAPE_CLASSES}
    crest = (1 - cconf) / 3
    cp = {k: (cconf if k == colour else crest) for k in ("red", "green", "blue", "yellow")}
    return JudgeOutput(shape=shape, shape_conf=sconf, colour=colour, colour_conf=cconf, shape_probs=sp, colour_probs=cp)


def test_toy_concepts() -> None:
    assert toy_concept("Circle") == ("shape", "circle")
    assert toy_concept("disc") == ("shape", "circle")
    assert toy_concept("yellow") == ("colour", "yellow")
    with pytest.raises(ErasekitError, match="circle"):
        toy_concept("nudity")


@pytest.mark.parametrize(
    ("output", "concept", "threshold", "flagged"),
    [
        (out("circle", 0.7), "circle", 0.5, True),
        (out("circle", 0.5), "circle", 0.5, True),  # >= at the threshold
        (out("circle", 0.49), "circle", 0.5, False),
        (out("circle", 0.7), "disc", 0.5, True),  # synonym
        (out("square", 0.9), "circle", 0.5, False),
        (out("none", 0.9), "circle", 0.5, False),  # no clear shape
        (out("circle", 0.7), "circle", 0.8, False),
        (out("square", 0.9, "blue", 0.8), "blue", 0.5, True),
        (out("square", 0.9, "blue", 0.4), "blue", 0.5, False),
        (out("none", 0.9, "blue", 0.99), "blue", 0.5, False),  # colour needs a shape
        (out("square", 0.9, "red", 0.9), "blue", 0.5, False),
    ],
)
def test_decision_rule(output: JudgeOutput, concept: str, threshold: float, flagged: bool) -> None:
    d = decide_judge(output, concept, threshold)
    assert d.flagged is flagged
    assert len(d.scores) == len(SHAPE_CLASSES) + 4
    kind, name = toy_concept(concept)
    assert d.score == (output.shape_probs if kind == "shape" else output.colour_probs)[name]


def test_detector_module_runs_the_judge(random_judge_dir: Path, toy_renders) -> None:
    det = ToyJudgeDetector(judge_path=str(random_judge_dir))
    imgs = toy_renders["circle"][:3] + toy_renders["cross"][:3]
    raw = det.predict(imgs)
    dets = det.detect(imgs, "circle")
    assert len(dets) == 6
    for o, d in zip(raw, dets, strict=True):
        assert d.flagged == (o.shape == "circle" and o.shape_conf >= 0.5)
        assert d.scores["shape:circle"] == pytest.approx(o.shape_probs["circle"])
    assert det.detect([], "circle") == []
    with pytest.raises(ErasekitError):
        det.detect(imgs, "person")
    assert det.protocol()["threshold"] == 0.5


def test_missing_judge_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="toy judge weights not found"):
        ToyJudgeDetector(judge_path=str(tmp_path / "nothing"))


def test_pool_builds_the_judge_once(random_judge_dir: Path) -> None:
    pool = DetectorPool("cpu")
    a = pool.get("toy_judge", judge_path=str(random_judge_dir))
    assert pool.get("toy_judge", judge_path=str(random_judge_dir), threshold=0.5) is a
    assert pool.get("toy_judge", judge_path=str(random_judge_dir), threshold=None) is a
    b = pool.get("toy_judge", judge_path=str(random_judge_dir), threshold=0.9)
    assert b.judge is a.judge and b.threshold == 0.9


def test_trained_judge_on_renders(toy_renders) -> None:
    from erasekit.toyworld import JUDGE_DIR

    if not (Path(JUDGE_DIR) / "model.safetensors").is_file():
        pytest.skip("toy judge weights not committed yet")
    det = ToyJudgeDetector()
    circles = det.detect(toy_renders["circle"], "circle")
    squares = det.detect(toy_renders["square"], "circle")
    assert sum(d.flagged for d in circles) >= 15
    assert sum(d.flagged for d in squares) <= 1
