"""The few text helpers every part of report.html uses: escaping and number formatting."""

from __future__ import annotations

import html
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
