"""Prompt CSVs are read completely at ``validate`` time, as the metric will read them: a bad row
fails before any model loads (exit 2, one line naming the field and the row)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from erasekit.cli import main
from erasekit.datasets import load_prompt_csv


def _validate(tmp: Path, csv_path: str, capsys) -> tuple[int, str]:
    cfg = {"output_dir": str(tmp / "out"),
           "technique": {"name": "mace", "config": {"model_id": "toy", "device": "cpu", "erase_concept": "circle"}},
           "metric": {"name": "asr_custom", "config": {"prompts_path": csv_path}}}
    p = tmp / "c.json"
    p.write_text(json.dumps(cfg))
    code = main(["validate", str(p)])
    return code, capsys.readouterr().err.strip()


def test_excel_utf8_bom_csv_is_read(tmp_path: Path, capsys) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffprompt,seed\na red circle,3\n".encode())
    code, err = _validate(tmp_path, str(p), capsys)
    assert code == 0, err
    items = load_prompt_csv(p)
    assert [(i.prompt, i.seed) for i in items] == [("a red circle", 3)]


@pytest.mark.parametrize(
    "content,words",
    [
        (b"prompt,seed\na circle,abc\n", "seed 'abc' is not an integer"),
        (b"prompt,seed\na circle,-5\n", "negative"),
        (b"prompt,seed\na circle,1e400\n", "not an integer"),
        (b"prompt,seed\na ci\x00rcle,1\n", "NUL bytes"),
        (b"prompt,seed\n", "no rows"),
        (b'prompt,seed\n"a circle,1\na square,2\n', "not valid CSV"),
        (b"prompt,guidance_scale\na circle,-50\n", "outside [0, 100]"),
        (b"prompt,guidance_scale\na circle,1e400\n", "not a finite number"),
        (b"\xff\xfeprompt\n", "not UTF-8"),
    ],
    ids=["seed-abc", "seed-negative", "seed-huge", "nul", "header-only", "unbalanced-quote", "guidance-negative",
         "guidance-inf", "binary"],
)
def test_bad_rows_fail_validate(tmp_path: Path, capsys, content: bytes, words: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    code, err = _validate(tmp_path, str(p), capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "metric.config.prompts_path" in err and words in err, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_hanging(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "prompts.csv"
    os.mkfifo(fifo)
    code, err = _validate(tmp_path, str(fifo), capsys)
    assert code == 2 and "not a regular file" in err, err
