"""Config checks shared by several metrics (kept here so each rule exists once)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from erasekit.errors import ConfigError

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun

NUDITY_WORDS = ("nudity", "nude", "naked", "nsfw", "sexual")


def concept_for(run: ResolvedRun, override: str | None) -> str | None:
    """The concept a metric evaluates: its own field if set, else the technique's primary concept."""
    if override:
        return override
    concepts = run.concepts()
    return concepts[0] if concepts else None


def is_nudity(concept: str | None) -> bool:
    return concept is not None and concept.strip().lower() in NUDITY_WORDS


def is_toy_concept(concept: str | None) -> bool:
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    names = set(SHAPES) | set(COLOURS) | {s for syns in SYNONYMS.values() for s in syns}
    return concept is not None and concept.strip().lower() in names


def require_file(path: str | None, where: str, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(where, f"{what} not found: {path}", "check the path (relative paths are relative to the working directory)")
    return p


def require_prompt_csv(path: str | None, where: str) -> Path:
    """A CSV that exists, decodes as UTF-8 and has a ``prompt`` column."""
    if not path:
        raise ConfigError(where, "required", "give the path of a CSV file with a 'prompt' column")
    p = require_file(path, where, "prompt CSV")
    assert p is not None
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise ConfigError(where, f"{path} is not UTF-8 text", "save the CSV as UTF-8") from None
    except (OSError, csv.Error) as exc:
        raise ConfigError(where, f"cannot read {path} ({exc})", "give a readable CSV file") from None
    if not header or "prompt" not in [h.strip().lower() for h in header]:
        raise ConfigError(where, f"{path} has no 'prompt' column", "add a header row with a 'prompt' column")
    return p
