"""COCO captions / reference images and TIFA v1.0 loaders on fixtures written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from erasekit.datasets import (
    coco_reference_images,
    load_coco_captions,
    load_tifa,
    toy_coco_captions,
    toy_reference_images,
    toy_tifa,
)
from erasekit.errors import ConfigError

F = "metrics[2].config.captions_path"


# ----------------------------------------------------------------------------- COCO captions
def test_captions_csv_caption_or_prompt_column(tmp_path: Path) -> None:
    p = tmp_path / "coco.csv"
    p.write_text("image_id,caption,evaluation_seed\n9,A man riding a horse.,3\n10,Two dogs play.,4\n")
    items = load_coco_captions(p, field=F)
    assert [(i.prompt, i.seed, i.meta["image_id"]) for i in items] == [("A man riding a horse.", 3, "9"), ("Two dogs play.", 4, "10")]
    q = tmp_path / "mace_coco.csv"
    q.write_text(",prompt,evaluation_seed\n0,a red bus,11\n1,a cat,12\n2,a dog,13\n")
    assert [i.prompt for i in load_coco_captions(q, limit=2)] == ["a red bus", "a cat"]


def test_captions_csv_without_caption_column(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("text\nhello\n")
    with pytest.raises(ConfigError, match=r"^metrics\[2\]\.config\.captions_path: .*none of the columns 'caption', 'prompt'"):
        load_coco_captions(p, field=F)


def test_coco_annotations_json_one_caption_per_image(tmp_path: Path) -> None:
    data = {"images": [], "annotations": [
        {"image_id": 5, "id": 1, "caption": "A  bus\non a street."},
        {"image_id": 5, "id": 2, "caption": "A red bus."},
        {"image_id": 7, "id": 3, "caption": "A cat on a mat."},
    ]}
    p = tmp_path / "captions_val2014.json"
    p.write_text(json.dumps(data))
    items = load_coco_captions(p)
    assert [(i.prompt, i.meta["image_id"]) for i in items] == [("A bus on a street.", 5), ("A cat on a mat.", 7)]


def test_caption_list_json(tmp_path: Path) -> None:
    p = tmp_path / "caps.json"
    p.write_text(json.dumps(["a cat", {"caption": "a dog", "seed": 3}, "  "]))
    items = load_coco_captions(p)
    assert [(i.prompt, i.seed) for i in items] == [("a cat", None), ("a dog", 3)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"annotations": [ {"image_id": 1, "caption": "x"} ', "not valid JSON (line 1"),
        ('{"images": []}', "neither a COCO annotations file"),
        ('[1, 2]', "entry 0 is not a caption string"),
        ('{"annotations": [{"image_id": 1}]}', "annotation 0 has no 'caption'"),
        ("[]", "contains no captions"),
        ("", "is empty"),
    ],
)
def test_malformed_caption_json(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ConfigError) as ei:
        load_coco_captions(p, field=F)
    assert ei.value.path == F and message in str(ei.value)


def test_no_captions_for_real_runs_but_toy_has_them() -> None:
    with pytest.raises(ConfigError, match="COCO captions are not bundled"):
        load_coco_captions(None, field=F)
    toy = toy_coco_captions(30)
    assert len(toy) == 30 and toy[24].prompt == toy[0].prompt and toy[24].seed != toy[0].seed


# ----------------------------------------------------------------------------- reference images
def test_reference_folder(tmp_path: Path) -> None:
    d = tmp_path / "ref"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / name)
    (d / "notes.txt").write_text("not an image")
    ref = coco_reference_images(d, field="metrics[0].config.reference_path")
    assert [p.name for p in ref.paths] == ["a.jpg", "b.png", "c.png"] and len(ref) == 3
    assert ref.image(0).mode == "RGB" and ref.image(0).size == (8, 8)
    batches = list(ref.iter_batches(2))
    assert [len(b) for b in batches] == [2, 1]
    two = coco_reference_images(d, limit=2)
    assert len(two) == 2 and two.key != ref.key
    assert coco_reference_images(d).key == ref.key  # stable


def test_reference_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        coco_reference_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="contains no images"):
        coco_reference_images(tmp_path / "empty")
    f = tmp_path / "stats.npz"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is not a folder"):
        coco_reference_images(f)
    with pytest.raises(ConfigError, match="not bundled"):
        coco_reference_images(None)


def test_toy_reference_images_are_deterministic() -> None:
    a = toy_reference_images(6)
    b = toy_reference_images(6)
    assert len(a) == 6 and a.key == b.key
    np.testing.assert_array_equal(np.asarray(a.image(3)), np.asarray(b.image(3)))
    assert a.image(0).size == (32, 32)


# ----------------------------------------------------------------------------- TIFA
def qa(cid: str, caption: str, question: str, choices: list[str], answer: str, et: str = "object") -> dict:
    return {"id": cid, "caption": caption, "question": question, "choices": choices, "answer": answer,
            "element_type": et, "element": answer}


def test_tifa_groups_questions_by_caption(tmp_path: Path) -> None:
    data = [
        qa("coco_1", "A surfer on a beach.", "is this a surfer?", ["yes", "no"], "yes", "animal/human"),
        qa("coco_1", "A surfer on a beach.", "what type of place is this?", ["beach", "park"], "beach", "location"),
        qa("draw_2", "Three cats.", "how many cats are in the picture?", ["1", "2", "3", "4"], "3", "counting"),
        qa("coco_3", "A red bus.", "what color is the bus?", ["red", "blue"], "red", "color"),
    ]
    p = tmp_path / "tifa_v1.0_question_answers.json"
    p.write_text(json.dumps(data))
    items = load_tifa(p, field="metrics[3].config.qa_path")
    assert [(i.id, i.caption, len(i.questions)) for i in items] == [("coco_1", "A surfer on a beach.", 2), ("draw_2", "Three cats.", 1), ("coco_3", "A red bus.", 1)]
    q = items[0].questions[1]
    assert (q.question, q.choices, q.answer, q.element_type) == ("what type of place is this?", ("beach", "park"), "beach", "location")
    assert [i.id for i in load_tifa(p, limit=2)] == ["coco_1", "draw_2"]  # limit counts captions


def test_tifa_grouped_dict_form(tmp_path: Path) -> None:
    p = tmp_path / "grouped.json"
    p.write_text(json.dumps({"c1": [qa("c1", "A dog.", "is there a dog?", ["yes", "no"], "yes")]}))
    (item,) = load_tifa(p)
    assert item.id == "c1" and item.caption == "A dog." and len(item.questions) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"a": 1}', "entry 0 is not an object"),
        ("[]", "contains no questions"),
        ('"hello"', "not a list of TIFA questions"),
        ('[{"id": "x", "caption": "c", "question": "q?", "answer": "yes"}]', "entry 0 has no non-empty 'choices' list"),
        ('[{"id": "x", "caption": "c", "question": "q?", "choices": [], "answer": "yes"}]', "'choices'"),
        ('[{"id": "x", "caption": "c", "choices": ["yes"], "answer": "yes"}]', "no 'question' string"),
        ('[{"id": "x", "question": "q?", "choices": ["yes"], "answer": "yes"}]', "no 'caption' string"),
        ('[{"id": "x", "caption": "c", "question": "q?", "choices": ["yes"]}]', "no 'answer'"),
    ],
)
def test_tifa_malformed(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ConfigError) as ei:
        load_tifa(p, field="metrics[3].config.qa_path")
    assert ei.value.path == "metrics[3].config.qa_path" and "\n" not in str(ei.value)
    assert message in str(ei.value)


def test_tifa_bad_encoding_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "latin.json"
    p.write_bytes('[{"caption": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_tifa(p)
    with pytest.raises(ConfigError, match="TIFA v1.0 is not bundled"):
        load_tifa(None)


def test_toy_tifa() -> None:
    items = toy_tifa()
    assert len(items) == 28 and len({i.id for i in items}) == 28
    for it in items:
        assert it.questions
        for q in it.questions:
            assert q.answer in q.choices
    first = items[0]
    assert first.caption == "a red circle"
    assert {q.question: q.answer for q in first.questions} == {
        "what shape is in the image?": "circle", "is there a circle?": "yes", "is there a square?": "no",
        "what colour is the shape?": "red", "is the shape red?": "yes",
    }
    assert len(toy_tifa(5)) == 5
