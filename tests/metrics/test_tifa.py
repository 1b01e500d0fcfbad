"""tifa: TIFA v1.0 format, snapping of free-form answers, mean over captions, concept split.

Part 1: the metric's logic with a VQA whose answers the test controls. Part 2 (skipped until
the toy weights ship): the toy bars (base >= 0.85; after erasing circle, circle captions drop
while the others stay >= 0.85).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.metric_harness import RecordingPool, make_ctx, run_config, serve

from erasekit.detectors.vqa import VQA


class ScriptedVQA(VQA):
    """Answers from a table: image index (painted into pixel (0, 0)) → what the image shows."""

    name = "scripted"

    def __init__(self, truth: dict[int, tuple[str, str]]) -> None:
        self.truth = truth  # index -> (shape, colour)
        self.asked: list[str] = []

    def answer(self, images, questions):
        out = []
        for im, q in zip(images, questions, strict=True):
            self.asked.append(q)
            shape, colour = self.truth[int(np.asarray(im)[0, 0, 0])]
            q = q.lower()
            if q.startswith("what shape"):
                out.append(f"it is a {shape} shape")  # free form: must be snapped to "circle" etc.
            elif q.startswith("what colo"):
                out.append(f"{colour}ish" if colour == "yellow" else colour)
            elif q.startswith("is the shape"):
                out.append("yes it is" if colour in q else "no")
            elif q.startswith("is there"):
                out.append("yes" if shape in q or (shape == "circle" and "disc" in q) else "nope")
            else:
                out.append("unknown")
        return out


Pool = RecordingPool


def _metric(tmp: Path, config: dict[str, Any], pool: Any, **kw: Any) -> Any:
    run = run_config(tmp, "tifa", config, **kw)
    m = run.metrics[0]
    return m.cls.create(m.config, make_ctx(run, pool), f"{m.path}.config")


def _indexed(reqs):
    return lambda i, _r: np.full((8, 8, 3), i, np.uint8)


def _truth_from_caption(items, m: int = 1, wrong_shape_for: str | None = None) -> dict[int, tuple[str, str]]:
    from erasekit.toyworld import COLOURS, SHAPES

    truth = {}
    for ci, it in enumerate(items):
        words = it.caption.replace("disc", "circle").split()
        shape = next((w for w in words if w in SHAPES), "square")
        colour = next((w for w in words if w in COLOURS), "red")
        if wrong_shape_for and shape == wrong_shape_for:
            shape = "none"
        for k in range(m):
            truth[ci * m + k] = (shape, colour)
    return truth


def test_toy_questions_snapping_and_concept_split(tmp_path: Path) -> None:
    pool = Pool(ScriptedVQA({}))
    metric = _metric(tmp_path, {"images_per_caption": 2, "preset": "erasekit"}, pool, technique="mace", tconfig={"erase_concept": "circle"})
    reqs = metric.requests()
    items = metric.items
    assert len(items) == 28 and len(reqs) == 56 and [r.seed for r in reqs[:2]] == [0, 1]
    assert reqs[0].prompt == items[0].caption
    # a VQA that sees exactly what each caption asks for: every snapped answer is right
    pool.detector.truth = _truth_from_caption(items, 2)
    res = metric.compute(serve(reqs, tmp_path / "a", _indexed(reqs)))
    assert res.value == pytest.approx(1.0)
    assert pool.calls[0][0] == "vqa" and pool.calls[0][1]["vqa_model"] == "toy"  # the judge answers on toy
    # circles not drawn any more: circle captions lose their shape questions, the others keep 1.0
    pool.detector.truth = _truth_from_caption(items, 2, wrong_shape_for="circle")
    res = metric.compute(serve(reqs, tmp_path / "b", _indexed(reqs)))
    split = res.details["by_concept"]
    assert split["concept_words"] == ["circle", "disc"]
    assert split["without_concept"]["tifa"] == pytest.approx(1.0) and split["without_concept"]["captions"] == 19
    assert split["with_concept"]["captions"] == 9 and split["with_concept"]["tifa"] < 0.7
    assert res.value < 1.0 and res.details["accuracy_by_element_type"]["color"] == pytest.approx(1.0)
    rec = res.records[0]
    assert rec["caption_id"] == items[0].id and rec["names_concept"] and len(rec["questions"]) == len(items[0].questions)
    q0 = rec["questions"][0]
    assert q0["free_answer"] == "it is a none shape" and q0["snapped"] in items[0].questions[0].choices


def test_tifa_v1_file_mean_over_captions_not_questions(tmp_path: Path, tiny_sd_dir: Path) -> None:
    qa = [
        {"id": "c1", "caption": "a red  circle", "question": "what shape is in the image?", "choices": ["circle", "square"],
         "answer": "circle", "element_type": "shape", "element": "circle"},
        {"id": "c1", "caption": "a red  circle", "question": "what colour is the shape?", "choices": ["red", "blue"],
         "answer": "red", "element_type": "color", "element": "red"},
        {"id": "c1", "caption": "a red  circle", "question": "is there a circle?", "choices": ["yes", "no"],
         "answer": "yes", "element_type": "object", "element": "circle"},
        {"id": "c1", "caption": "a red  circle", "question": "is the shape red?", "choices": ["yes", "no"],
         "answer": "yes", "element_type": "color", "element": "red"},
        {"id": "c2", "caption": "a blue square", "question": "what shape is in the image?", "choices": ["circle", "square"],
         "answer": "square", "element_type": "shape", "element": "square"},
        {"id": "c3", "caption": "not used (limit)", "question": "q?", "choices": ["a"], "answer": "a"},
    ]
    path = tmp_path / "tifa_v1.0_question_answers.json"
    path.write_text(json.dumps(qa))
    pool = Pool(ScriptedVQA({0: ("circle", "red"), 1: ("circle", "blue")}))  # c2's image shows the wrong shape
    metric = _metric(tmp_path, {"qa_path": str(path), "limit": 2, "preset": "erasekit"}, pool, model_id=str(tiny_sd_dir))
    reqs = metric.requests()
    assert [r.prompt for r in reqs] == ["a red circle", "a blue square"]
    res = metric.compute(serve(reqs, tmp_path / "img", _indexed(reqs)))
    assert res.value == pytest.approx(0.5)  # (4/4 + 0/1) / 2 captions
    assert res.details["question_accuracy"] == pytest.approx(0.8)  # 4 of 5 questions: not the TIFA score
    assert res.details["captions"] == 2 and res.details["questions"] == 5
    assert "by_concept" not in res.details  # the baseline erases nothing: no split
    assert pool.calls[0][1]["vqa_model"] == "Salesforce/blip-vqa-base"


# ---------------------------------------------------------------------------- toy world end to end


@pytest.mark.slow
def test_toy_tifa_bars_before_and_after_erasing_circle(tmp_path_factory: pytest.TempPathFactory) -> None:
    from test_mma import run_toy, toy_ready

    if not toy_ready():
        pytest.skip("toy world weights are not shipped yet")
    cache = tmp_path_factory.getbasetemp() / "toy-cache-metrics-ii"
    metric = {"name": "tifa", "config": {"device": "cpu", "images_per_caption": 2}}
    m = run_toy(tmp_path_factory.mktemp("tifa_toy") / "run", cache, metric)["metrics"]["tifa"]
    base, erased = m["base_details"]["by_concept"], m["details"]["by_concept"]
    assert m["base_value"] >= 0.85
    assert erased["with_concept"]["tifa"] < base["with_concept"]["tifa"] - 0.1  # circle captions drop
    assert erased["without_concept"]["tifa"] >= 0.85  # the others stay faithful
