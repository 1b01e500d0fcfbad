"""File reading with one-line errors: every failure is a ConfigError naming the config field.

Loaders take ``field`` (the dotted config path, e.g.
``metrics[1].config.prompts_path``) so a user sees which setting points at the
bad file and what to do, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from erasekit.errors import ConfigError


def existing_file(path: str | Path, field: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(field, f"{what} not found: {path}", "check the path (relative paths are relative to the working directory)")
    if not p.is_file():
        raise ConfigError(field, f"{what} {path} is not a file", "point it at the file itself")
    return p


def read_text(path: str | Path, field: str, what: str) -> str:
    """UTF-8 text (a BOM is accepted); empty or undecodable files are ConfigErrors."""
    p = existing_file(path, field, what)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path} ({exc.strerror or exc})", "check the file's permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            field,
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "re-save the file as UTF-8",
        ) from None
    if not text.strip():
        raise ConfigError(field, f"{path} is empty", f"fill the {what} or point {field.rsplit('.', 1)[-1]} at another file")
    return text


def read_csv(
    path: str | Path, field: str, what: str, required: tuple[str, ...] = (), any_of: tuple[str, ...] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """(lower-cased header, rows as {lower-cased column: stripped value}).

    ``required``: columns that must all be there; ``any_of``: at least one must be.
    """
    text = read_text(path, field, what)
    if "\x00" in text:
        raise ConfigError(field, f"{path} contains NUL bytes (binary file?)", f"give a CSV text file as the {what}")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error, not merged rows
        header = next(reader, None)
        rows_raw = list(reader)
    except csv.Error as exc:
        raise ConfigError(field, f"{path} is not valid CSV ({exc})", "check the quoting of the file") from None
    if not header or not any(h.strip() for h in header):
        raise ConfigError(field, f"{path} has no header row", "add a header row naming the columns (e.g. prompt)")
    cols = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in cols]
    if missing:
        raise ConfigError(
            field,
            f"{path} has no {' / '.join(repr(m) for m in missing)} column (columns: {', '.join(c for c in cols if c) or 'none'})",
            f"add a header row with a {missing[0]!r} column",
        )
    if any_of and not any(c in cols for c in any_of):
        raise ConfigError(
            field,
            f"{path} has none of the columns {', '.join(repr(c) for c in any_of)} (columns: {', '.join(c for c in cols if c)})",
            f"add a {any_of[0]!r} column",
        )
    rows: list[dict[str, str]] = []
    for r in rows_raw:
        if not r or all(not v.strip() for v in r):
            continue  # blank line
        rows.append({c: (r[i].strip() if i < len(r) else "") for i, c in enumerate(cols) if c})
    if not rows:
        raise ConfigError(field, f"{path} has a header but no rows", f"add at least one row to the {what}")
    return cols, rows


def read_json(path: str | Path, field: str, what: str) -> Any:
    text = read_text(path, field, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            field, f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", f"fix the {what} file"
        ) from None


def _number(value: str) -> float | None:
    """A numeric cell as a float: None when empty (or "nan", "none", "null"); ValueError when not a number."""
    v = value.strip()
    if not v or v.lower() in ("nan", "none", "null"):
        return None
    return float(v)


def parse_int(value: str, field: str, where: str, column: str) -> int | None:
    """An integer cell ("" → None; "42.0" accepted); anything else is a ConfigError naming the row."""
    try:
        f = _number(value)
    except ValueError:
        f = math.nan
    if f is None:
        return None
    if math.isnan(f) or not f.is_integer():
        raise ConfigError(field, f"{where}: {column} {value!r} is not an integer", f"fix the {column} column (whole numbers or empty)")
    i = int(f)
    if i < 0:
        raise ConfigError(field, f"{where}: {column} {i} is negative", f"use seeds >= 0 in the {column} column")
    return i


def parse_float(value: str, field: str, where: str, column: str) -> float | None:
    try:
        f = _number(value)
    except ValueError:
        raise ConfigError(field, f"{where}: {column} {value!r} is not a number", f"fix the {column} column") from None
    if f is None or math.isnan(f):
        return None
    if math.isinf(f):
        raise ConfigError(field, f"{where}: {column} {value!r} is not a finite number", f"fix the {column} column")
    return f


def first_column(cols: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in cols), None)
