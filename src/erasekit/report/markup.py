"""The few text helpers report.html, its charts and ``compare`` share: escaping, number formatting,
and which values count as numbers at all."""

from __future__ import annotations

import html
import math
from typing import Any


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4f}"
    return esc(x)


def _num(x: Any, digits: int = 4) -> str:
    """A number for a card: ``digits`` significant digits (scores like 1.9e-05 stay readable)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return esc(x)
    return esc(f"{x:.{digits}g}")


def finite_number(x: Any) -> float | None:
    """``x`` as a float when it is a finite int or float (not a bool), else None: what a table or
    chart may print and what BenchScore may normalise."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None
