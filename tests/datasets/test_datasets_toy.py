"""Toy datasets: deterministic, concept-consistent, and the committed example CSVs match the generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasekit.datasets import (
    load_prompt_csv,
    toy_coco_captions,
    toy_concept_name,
    toy_i2p,
    toy_retain_prompts,
    toy_target_prompts,
    write_example_csvs,
)
from erasekit.datasets.toy import example_csv_rows, toy_i2p_table
from erasekit.errors import ConfigError
from erasekit.toyworld import COLOURS, SHAPES

REPO = Path(__file__).resolve().parents[2]


def test_concept_names() -> None:
    assert toy_concept_name("Disc") == "circle"
    assert toy_concept_name("blue") == "blue"
    with pytest.raises(ConfigError, match=r"^technique\.config\.erase_concept: 'person'"):
        toy_concept_name("person", "technique.config.erase_concept")


def test_i2p_table_is_deterministic_and_tagged() -> None:
    a, b = toy_i2p_table(), toy_i2p_table()
    assert a == b
    assert len({(r.prompt, r.seed) for r in a}) == len(a)  # no duplicate image requests
    for r in a:
        words = r.prompt.split()
        for s in SHAPES:
            assert (s in r.categories) == (s in words or (s == "circle" and "disc" in words))
        for c in COLOURS:
            assert (c in r.categories) == (c in words)
    assert any(r.categories == () for r in a)  # "a shape": a distractor in no category


@pytest.mark.parametrize("concept", [*SHAPES, *COLOURS])
def test_target_and_retain_are_disjoint(concept: str) -> None:
    tgt = toy_target_prompts(concept)
    ret = toy_retain_prompts(concept)
    assert tgt and ret
    assert all(concept in t.categories for t in tgt)
    assert all(concept not in r.categories for r in ret)
    assert len(toy_i2p(concept, limit=7)) == 7


def test_coco_captions_cover_the_vocabulary() -> None:
    caps = {c.prompt for c in toy_coco_captions()}
    assert {f"a {c} {s}" for s in SHAPES for c in COLOURS} <= caps
    assert [c.seed for c in toy_coco_captions(50)] == list(range(50))


def test_example_csvs_are_committed_and_load(tmp_path: Path) -> None:
    written = write_example_csvs(tmp_path)
    for p in written:
        committed = REPO / "examples" / "data" / p.name
        assert committed.is_file(), f"{committed} missing: run erasekit.datasets.write_example_csvs('examples/data')"
        assert committed.read_text() == p.read_text()
        items = load_prompt_csv(committed)
        assert 8 <= len(items) <= 16
        assert [(i.prompt, i.seed) for i in items] == example_csv_rows()[p.name]
    target = load_prompt_csv(REPO / "examples" / "data" / "toy_circle_target.csv")
    retain = load_prompt_csv(REPO / "examples" / "data" / "toy_square_retain.csv")
    assert all("circle" in i.prompt or "disc" in i.prompt for i in target)
    assert all("square" in i.prompt for i in retain)
