"""Hostile config files end in exit 2 and one short line, quickly (no traceback, no memory blow-up)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.config import load_config

GOOD = """output_dir: out
technique: {name: none, config: {model_id: toy, device: cpu}}
metric: {name: clip_score, config: {limit: 2}}
"""

BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
output_dir: *g
technique: {name: none}
metric: {name: clip_score}
"""


@pytest.mark.parametrize(
    "name,text,words",
    [
        ("dup.yaml", GOOD + "output_dir: other\n", "duplicate key 'output_dir'"),
        ("dup.json", '{"output_dir": "a", "output_dir": "b", "technique": {"name": "none"}}', "duplicate key 'output_dir'"),
        ("deep.json", "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("deep.yaml", "[" * 5000 + "]" * 5000, ""),
        ("bigint.yaml", GOOD.replace("limit: 2", "limit: " + "9" * 5000), "limit"),
        ("hexint.yaml", GOOD.replace("limit: 2", "limit: 0x" + "f" * 5000), "limit"),
        ("tag.yaml", GOOD.replace("limit: 2", "limit: !!int 'abc'"), "cannot be read"),
        ("bomb.yaml", BOMB, "expands to more than"),
        ("nul.yaml", GOOD.replace("limit: 2", "limit: \"a\\0b\""), "limit"),
    ],
)
def test_hostile_file_is_one_short_line_and_exit_2(tmp_path: Path, capsys, name: str, text: str, words: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    t0 = time.perf_counter()
    code = main(["validate", str(p)])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and len(err) <= 300, err
    assert "Traceback" not in err and "\x00" not in err
    assert words in err
    assert elapsed < 5


def test_output_dir_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    p = tmp_path / "c.yaml"
    p.write_text(GOOD.replace("output_dir: out", "output_dir: ~/runs/x"))
    run = load_config(p)
    assert run.output_dir == tmp_path / "runs" / "x"
    assert run.cache_dir == tmp_path / "runs" / "x" / "cache"
