"""VQA: answer snapping, toy question answering, BLIP-VQA loading from a folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from erasekit.detectors import BlipVQA, DetectorPool, ToyVQA, make_vqa, normalise_answer, snap_to_choice
from erasekit.detectors.vqa import answer_from_judge
from erasekit.errors import ModelNotFoundError
from erasekit.toyworld.judge import JudgeOutput


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("surfer", ["surfer", "swimmer", "diver"], "surfer"),
        ("The Beach.", ["beach", "park"], "beach"),
        ("three", ["1", "2", "3", "4"], "3"),
        ("yes, it is", ["yes", "no"], "yes"),
        ("no there isn't", ["yes", "no"], "no"),
        ("nope", ["no", "yes"], "no"),
        ("dark blue", ["red", "blue", "green"], "blue"),  # containment
        ("grey", ["gray", "black"], "gray"),
        ("a large red apple", ["apple", "red apple", "pear"], "red apple"),  # longest contained choice
        ("tennis", ["tennis racket", "ball"], "tennis racket"),  # answer inside a choice
        ("circel", ["circle", "square", "triangle"], "circle"),  # character similarity
    ],
)
def test_snap_to_choice(answer: str, choices: list[str], expected: str) -> None:
    assert snap_to_choice(answer, choices) == expected


def test_snap_edge_cases() -> None:
    assert normalise_answer("  The  Two Colours! ") == "2 colors"
    assert snap_to_choice("xyz", ["abc", "def"]) in ("abc", "def")  # always a choice by default
    assert snap_to_choice("xyz", ["abc", "def"], min_similarity=0.5) is None
    assert snap_to_choice("qq", ["aa", "bb"]) == "aa"  # ties → earlier choice
    with pytest.raises(ValueError):
        snap_to_choice("yes", [])
    # abstentions are not snapped to an arbitrary choice (the toy VQA answers "none" for no shape)
    assert snap_to_choice("none", ["circle", "square", "triangle", "cross"]) is None
    assert snap_to_choice("unknown", ["red", "blue"]) is None
    assert snap_to_choice("", ["red", "blue"]) is None
    assert snap_to_choice("none", ["0", "1", "2"]) == "0"
    assert snap_to_choice("none", ["yes", "no"]) == "no"
    assert snap_to_choice("none", ["none", "circle"]) == "none"


def jo(shape: str, colour: str) -> JudgeOutput:
    return JudgeOutput(shape=shape, shape_conf=0.9, colour=colour, colour_conf=0.9)


@pytest.mark.parametrize(
    ("output", "question", "expected"),
    [
        (jo("circle", "red"), "what shape is in the image?", "circle"),
        (jo("none", "red"), "what shape is in the image?", "none"),
        (jo("cross", "blue"), "What colour is the shape?", "blue"),
        (jo("cross", "blue"), "what color is the cross?", "blue"),
        (jo("circle", "red"), "is there a circle?", "yes"),
        (jo("circle", "red"), "is there a disc?", "yes"),
        (jo("circle", "red"), "is there a square?", "no"),
        (jo("circle", "red"), "is there a red circle?", "yes"),
        (jo("circle", "green"), "is there a red circle?", "no"),
        (jo("triangle", "green"), "is the shape green?", "yes"),
        (jo("none", "green"), "is the shape green?", "no"),
        (jo("square", "red"), "are there squares?", "yes"),
        (jo("square", "red"), "how many shapes are there?", "1"),
        (jo("none", "red"), "how many shapes are there?", "0"),
        (jo("square", "red"), "who is on the beach?", "unknown"),
    ],
)
def test_toy_answers(output: JudgeOutput, question: str, expected: str) -> None:
    assert answer_from_judge(output, question) == expected


def test_toy_vqa_runs_the_judge(random_judge_dir: Path, toy_renders) -> None:
    vqa = ToyVQA(judge_path=str(random_judge_dir))
    imgs = toy_renders["circle"][:2]
    answers = vqa.answer(imgs, ["what shape is in the image?", "what colour is the shape?"])
    raw = vqa.judge.predict(imgs)
    assert answers == [raw[0].shape, raw[1].colour if raw[1].shape != "none" else "none"]
    pairs = vqa.answer_choices(imgs[:1], ["is there a circle?"], [["yes", "no"]])
    assert pairs[0][1] in ("yes", "no")
    with pytest.raises(ValueError, match="one question per image"):
        vqa.answer(imgs, ["what shape?"])
    assert isinstance(make_vqa("toy", judge_path=str(random_judge_dir)), ToyVQA)


def test_blip_vqa_from_a_local_folder(tiny_blip_dir: Path, noise_images) -> None:
    vqa = BlipVQA(str(tiny_blip_dir), max_new_tokens=4, batch_size=2)
    answers = vqa.answer(noise_images(3), ["what shape is there?", "is there a circle?", "what color is the shape?"])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    # batching does not change answers (greedy decoding)
    single = BlipVQA(str(tiny_blip_dir), max_new_tokens=4, batch_size=1).answer(noise_images(3), [
        "what shape is there?", "is there a circle?", "what color is the shape?"])
    assert single == answers
    assert vqa.protocol()["model"] == str(tiny_blip_dir)


def test_missing_blip_fails_fast_naming_the_field(tmp_path: Path) -> None:
    t0 = time.time()
    with pytest.raises(ModelNotFoundError, match=r"vqa_model.*huggingface-cli download Salesforce/blip-vqa-base"):
        make_vqa("Salesforce/blip-vqa-base")
    assert time.time() - t0 < 10
    with pytest.raises(ModelNotFoundError, match="not found"):
        BlipVQA(str(tmp_path / "missing" / "blip" / "dir"))
    with pytest.raises(ModelNotFoundError, match=r"^metrics\[3\]\.config\.vqa_model: BLIP-VQA model"):
        DetectorPool("cpu").get("vqa", field="metrics[3].config.vqa_model")


def test_pool_routes_vqa(random_judge_dir: Path) -> None:
    pool = DetectorPool("cpu")
    v = pool.get("vqa", vqa_model="toy", judge_path=str(random_judge_dir))
    assert isinstance(v, ToyVQA)
    assert pool.get("vqa", vqa_model="toy", judge_path=str(random_judge_dir)) is v
