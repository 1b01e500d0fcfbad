"""Canonical JSON: one byte string per value, so hashes of configs and cache payloads are stable."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, ASCII only; non-JSON values (paths, tuples …) via ``str``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def stable_hash(obj: Any, n: int | None = None) -> str:
    """sha256 hex digest of :func:`canonical_json` (first ``n`` characters when given)."""
    h = hashlib.sha256(canonical_json(obj).encode()).hexdigest()
    return h if n is None else h[:n]
