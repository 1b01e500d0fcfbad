"""Generic prompt CSV loader: good files, column aliases, and every malformed-file error."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasekit.datasets import PromptItem, load_prompt_csv
from erasekit.errors import ConfigError

FIELD = "metrics[1].config.prompts_path"


def write(tmp_path: Path, text: str | bytes, name: str = "p.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def err(path: Path | str, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_prompt_csv(path, field=FIELD, **kw)
    e = ei.value
    assert e.path == FIELD
    assert "\n" not in str(e) and str(e).startswith(FIELD + ": ")
    return e


def test_loads_prompts_seeds_and_extra_columns(tmp_path: Path) -> None:
    p = write(tmp_path, 'prompt,seed,case_number\n"a cat, sitting",3,7\na dog,,8\n\n  ,5,9\na bird,4.0,10\n')
    items = load_prompt_csv(p, field=FIELD)
    assert [i.prompt for i in items] == ["a cat, sitting", "a dog", "a bird"]  # blank + empty-prompt rows skipped
    assert [i.seed for i in items] == [3, None, 4]
    assert items[0].meta["case_number"] == "7" and items[0].guidance_scale is None
    assert isinstance(items[0], PromptItem)
    assert [i.prompt for i in load_prompt_csv(p, limit=2)] == ["a cat, sitting", "a dog"]


def test_paper_csv_aliases_bom_and_case(tmp_path: Path) -> None:
    text = "\ufeffPrompt,Evaluation_Seed,evaluation_guidance,categories\nnude person,42,7.5,\"sexual, Shocking\"\n"
    (item,) = load_prompt_csv(write(tmp_path, text))
    assert item == PromptItem("nude person", 42, 7.5, ("sexual", "shocking"))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "not found" in err(tmp_path / "nope.csv").problem
    assert "not a file" in err(tmp_path).problem


def test_empty_file(tmp_path: Path) -> None:
    assert "is empty" in err(write(tmp_path, "")).problem
    assert "is empty" in err(write(tmp_path, "\n  \n", "blank.csv")).problem


def test_header_only(tmp_path: Path) -> None:
    assert "no rows" in err(write(tmp_path, "prompt,seed\n")).problem


def test_missing_prompt_column(tmp_path: Path) -> None:
    e = err(write(tmp_path, "text,seed\na cat,1\n"))
    assert "no 'prompt' column" in e.problem and "text, seed" in e.problem
    assert "prompt" in e.fix


def test_bad_encoding(tmp_path: Path) -> None:
    e = err(write(tmp_path, "prompt\ncaf\xe9 au lait\n".encode("latin-1")))
    assert "not UTF-8" in e.problem and "0xe9" in e.problem
    assert "UTF-8" in e.fix


def test_binary_file(tmp_path: Path) -> None:
    assert "NUL" in err(write(tmp_path, b"prompt\n\x00\x01\x02\n")).problem


def test_bad_seed_names_the_row(tmp_path: Path) -> None:
    e = err(write(tmp_path, "prompt,seed\na,1\nb,two\n"))
    assert "row 2" in e.problem and "'two'" in e.problem
    assert "negative" in err(write(tmp_path, "prompt,seed\na,-1\n", "neg.csv")).problem
    assert "not an integer" in err(write(tmp_path, "prompt,seed\na,1.5\n", "frac.csv")).problem


def test_only_empty_prompts(tmp_path: Path) -> None:
    assert "no non-empty prompt" in err(write(tmp_path, "prompt,seed\n,1\n")).problem


def test_default_field_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^prompts_path: "):
        load_prompt_csv(tmp_path / "missing.csv")
