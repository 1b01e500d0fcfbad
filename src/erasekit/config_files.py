"""Reading a config file safely: JSON or YAML in, a plain dict out, or one ConfigError line.

Why a module of its own: a config file is untrusted input. Everything that makes reading one
safe lives here — a size limit, YAML's safe loader with duplicate keys refused, alias bombs and
deep nesting measured before anything walks the data, a parser error reported with its reason
and line — so the config models in :mod:`erasekit.config` only ever see a small, plain dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from erasekit.errors import ConfigError, clip_text


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a JSON or YAML file into a dict, or raise ConfigError (never a traceback)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(path), "config file not found", "check the path")
    if not p.is_file():
        raise ConfigError(str(path), "the config is not a regular file (a folder, FIFO or device?)", "give a JSON or YAML file")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), f"the config file is larger than {MAX_CONFIG_BYTES // 2**20} MiB", "a run config is a few KiB; check the file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read config file ({exc.__class__.__name__})", "save it as UTF-8 text") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        else:
            data = yaml.load(text, Loader=_StrictSafeLoader)  # a SafeLoader: never constructs Python objects
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", "fix the syntax") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML {_yaml_reason(exc)}", "fix the syntax there") from None
    except RecursionError:
        raise ConfigError(str(path), "the file is nested too deeply", "a run config is a few levels deep; check the file") from None
    except _DuplicateKey as exc:
        raise ConfigError(str(path), f"duplicate key {exc.key!r}", "keep one of them (the last one would silently win)") from None
    except Exception as exc:  # noqa: BLE001 - a YAML tag's constructor (`!!int 'abc'`, `!!timestamp 'x'`) can raise anything
        raise ConfigError(str(path), f"a value cannot be read ({exc.__class__.__name__}: {str(exc)[:80]})", "fix the value") from None
    if not isinstance(data, dict):
        raise ConfigError("<config>", f"the top level must be a mapping, got {type(data).__name__}", "start the file with output_dir, technique and metric(s) keys")
    try:
        depth, size = _measure(data, {})
    except RecursionError:
        depth, size = MAX_CONFIG_DEPTH + 1, 0
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(str(path), f"the config is nested more than {MAX_CONFIG_DEPTH} levels deep", "a run config is a few levels deep; check the file")
    if size > MAX_CONFIG_VALUES:
        raise ConfigError(str(path), f"the config expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases?)",
                          "write the config out; a run config has a few hundred values")
    return data


#: a run config has hundreds of values; a YAML alias bomb expands to billions
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_BYTES = 10 * 2**20


MAX_CONFIG_DEPTH = 32


def _measure(node: Any, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(nesting depth, number of values once every YAML alias is expanded), in O(distinct nodes);
    stops counting past the limits, and counts a cycle (a recursive alias) as too large."""
    if not isinstance(node, (dict, list)):
        return 0, 1
    key = id(node)
    if key not in memo:
        memo[key] = (MAX_CONFIG_DEPTH + 1, MAX_CONFIG_VALUES + 1)
        depth, total = 0, 1
        for child in node.values() if isinstance(node, dict) else node:
            d, n = _measure(child, memo)
            depth, total = max(depth, d), total + n
            if depth >= MAX_CONFIG_DEPTH or total > MAX_CONFIG_VALUES:
                break
        memo[key] = (depth + 1, total)
    return memo[key]


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """The parser's own reason and place: "at line 4, column 10: mapping values are not allowed
    here", plus where the construct began when that is elsewhere (an unclosed quote or bracket)."""
    mark = getattr(exc, "problem_mark", None)
    out = f"at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    if problem:
        out += f": {str(problem)[:80]}"
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark and (not mark or cmark.line != mark.line):
        out += f" ({str(context)[:50]} at line {cmark.line + 1}, column {cmark.column + 1})"
    return out or f"({exc.__class__.__name__})"


class _DuplicateKey(Exception):
    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = clip_text(repr(key), 60).strip("'")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _StrictSafeLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (not "last wins")."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_scalar(key_node)
                if key in seen:
                    raise _DuplicateKey(key)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
