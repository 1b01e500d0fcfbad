"""Inline SVG charts for report.html: pure functions from numbers to an ``<svg class='chart'>`` string.

No JavaScript, no fonts or styles fetched from anywhere: every chart is a self-contained SVG
element the page embeds as is. Every piece of text (labels, titles, printed values) is
HTML-escaped here, so callers may pass strings straight from a config, a prompt or a record.

- :func:`pair_bars`: erased vs base per row (one bar each), optionally normalised per row
  so numbers on different scales (FID 11, CLIP score 67, ASR 0.2) share one chart; the
  real values are always printed next to the bars.
- :func:`bars`: one bar per row (counts, rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from erasekit.report.markup import esc, finite_number

ERASED = "#3b6fd8"
BASE = "#a0a0a8"
TEXT = "#1d1d1f"
MUTED = "#666666"
FONT = "font-family='system-ui,-apple-system,Segoe UI,Roboto,sans-serif'"

_LABEL_W = 190
_BAR_W = 300
_VALUE_W = 120
_WIDTH = _LABEL_W + _BAR_W + _VALUE_W


def fmt_value(x: Any) -> str:
    """A number as printed on a chart: 4 significant digits, ``—`` when missing or not finite."""
    v = finite_number(x)
    if v is None:
        return "—"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.4g}"


def _clip(label: str, n: int = 30) -> str:
    label = " ".join(str(label).split())
    return label if len(label) <= n else label[: n - 1] + "…"


def _header(height: int, title: str, desc: str) -> str:
    return (
        f"<svg class='chart' role='img' width='{_WIDTH}' height='{height}'"
        f" viewBox='0 0 {_WIDTH} {height}' {FONT} font-size='12'>"
        f"<title>{esc(title)}</title><desc>{esc(desc)}</desc>"
        f"<text x='0' y='14' font-weight='600' fill='{TEXT}'>{esc(_clip(title, 90))}</text>"
    )


def _bar(x: float, y: float, w: float, h: float, colour: str, tip: str) -> str:
    w = max(w, 0.0)
    return (f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' fill='{colour}' rx='2'>"
            f"<title>{esc(tip)}</title></rect>")


def _empty(title: str, why: str) -> str:
    return (_header(44, title, why)
            + f"<text x='0' y='34' fill='{MUTED}'>{esc(why)}</text></svg>")


def pair_bars(
    rows: Sequence[tuple[str, Any, Any]],
    title: str,
    *,
    normalise: bool = True,
    vmax: float | None = None,
    labels: tuple[str, str] = ("erased", "base"),
    note: str = "",
) -> str:
    """Erased vs base bars per row ``(label, erased_value, base_value_or_None)``.

    ``normalise``: each row's bars are scaled by that row's largest absolute value (the
    row's longer bar fills the width); otherwise all rows share ``vmax`` (default: the
    largest value overall). Values are printed as they are, never normalised.
    """
    rows = list(rows)
    if not rows:
        return _empty(title, "nothing to plot")
    has_base = any(finite_number(b) is not None for _, _, b in rows)
    bh = 11 if has_base else 16
    row_h = (2 * bh + 10) if has_base else (bh + 10)
    top = 40
    height = top + row_h * len(rows) + 6
    if not normalise:
        vals = [abs(v) for _, e, b in rows for v in (finite_number(e), finite_number(b)) if v is not None]
        shared = vmax if vmax else (max(vals) if vals else 1.0)
        shared = shared or 1.0
    desc = "; ".join(f"{lab}: {labels[0]} {fmt_value(e)}" + (f", {labels[1]} {fmt_value(b)}" if has_base else "")
                     for lab, e, b in rows)
    out = [_header(height, title, desc)]
    legend_y = 30
    out.append(f"<rect x='0' y='{legend_y - 9}' width='10' height='10' fill='{ERASED}'/>"
               f"<text x='14' y='{legend_y}' fill='{TEXT}'>{esc(labels[0])}</text>")
    if has_base:
        out.append(f"<rect x='80' y='{legend_y - 9}' width='10' height='10' fill='{BASE}'/>"
                   f"<text x='94' y='{legend_y}' fill='{TEXT}'>{esc(labels[1])}</text>")
    scale_note = note or ("bars normalised per row (longest = 100 %); printed values are the real ones" if normalise
                          else f"scale 0 – {fmt_value(shared)}")
    out.append(f"<text x='{_WIDTH}' y='{legend_y}' text-anchor='end' fill='{MUTED}' font-size='10'>{esc(scale_note)}</text>")
    for i, (label, e, b) in enumerate(rows):
        y = top + i * row_h
        ev, bv = finite_number(e), finite_number(b)
        if normalise:
            m = max((abs(v) for v in (ev, bv) if v is not None), default=0.0) or 1.0
        else:
            m = shared
        out.append(f"<text x='0' y='{y + bh + 2:.1f}' fill='{TEXT}'><title>{esc(label)}</title>{esc(_clip(label))}</text>")
        pairs = [(ev, e, ERASED, labels[0], y)]
        if has_base:
            pairs.append((bv, b, BASE, labels[1], y + bh + 2))
        for v, raw, colour, name, yy in pairs:
            w = 0.0 if v is None else _BAR_W * min(abs(v) / m, 1.0)
            out.append(_bar(_LABEL_W, yy, w, bh, colour, f"{label} · {name}: {fmt_value(raw)}"))
            out.append(f"<text x='{_LABEL_W + w + 4:.1f}' y='{yy + bh - 1.5:.1f}' fill='{TEXT}' font-size='11'>"
                       f"{esc(name)} {esc(fmt_value(raw))}</text>")
    out.append("</svg>")
    return "".join(out)


def bars(rows: Sequence[tuple[str, Any]], title: str, *, vmax: float | None = None, colour: str = ERASED,
         note: str = "") -> str:
    """One horizontal bar per ``(label, value)``, all on one scale (0 – ``vmax`` or the largest value)."""
    rows = list(rows)
    if not rows:
        return _empty(title, "nothing to plot")
    vals = [abs(v) for _, x in rows if (v := finite_number(x)) is not None]
    m = vmax if vmax else (max(vals) if vals else 1.0)
    m = m or 1.0
    bh, row_h, top = 14, 20, 28
    height = top + row_h * len(rows) + 6
    desc = "; ".join(f"{lab}: {fmt_value(v)}" for lab, v in rows)
    out = [_header(height, title, desc)]
    out.append(f"<text x='{_WIDTH}' y='14' text-anchor='end' fill='{MUTED}' font-size='10'>"
               f"{esc(note or f'scale 0 – {fmt_value(m)}')}</text>")
    for i, (label, x) in enumerate(rows):
        y = top + i * row_h
        v = finite_number(x)
        w = 0.0 if v is None else _BAR_W * min(abs(v) / m, 1.0)
        out.append(f"<text x='0' y='{y + bh - 2:.1f}' fill='{TEXT}'><title>{esc(label)}</title>{esc(_clip(label))}</text>")
        out.append(_bar(_LABEL_W, y, w, bh, colour, f"{label}: {fmt_value(x)}"))
        out.append(f"<text x='{_LABEL_W + w + 4:.1f}' y='{y + bh - 2:.1f}' fill='{TEXT}' font-size='11'>{esc(fmt_value(x))}</text>")
    out.append("</svg>")
    return "".join(out)
