"""report.html: one self-contained page a person reads (inline CSS, images embedded as PNG data URIs).

Built only from what a finished run wrote (report.json, read through
:mod:`erasekit.report.schema`, records.jsonl, the image cache), so ``erasekit report DIR``
can rebuild it at any time, and a broken page never costs a number. The summary shows each
metric's declared direction and group (from its report entry; older reports: from the
registered metric class).
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from erasekit.report.schema import Report, declared, direction_label, load_report
from erasekit.utils.atomic_io import atomic_write_text, read_jsonl

MAX_IMAGES_PER_METRIC = 24
PROTOCOL_KEYS = ("preset", "detector", "threshold", "clip_model", "feature_extractor", "vqa_model", "n_images", "n", "images_per_prompt")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px} table{border-collapse:collapse;margin:8px 0;font-size:13px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums} td.dir{white-space:nowrap} .ok{color:#107c10} .failed{color:#c50f1f;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:8px} .cell{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;width:190px;font-size:11px}
.cell img{width:88px;height:88px;image-rendering:pixelated;border-radius:3px;border:3px solid transparent}
.cell img.flag{border-color:#c50f1f} .pair{display:flex;gap:6px} .lbl{color:#666;font-size:10px}
.prompt{margin-top:4px;word-break:break-word} .pos{color:#c50f1f;font-weight:600} .neg{color:#107c10}
code{font-size:12px} details{margin:4px 0}
"""


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4f}"
    return html.escape(str(x))


def _png_data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _protocol(details: dict[str, Any]) -> str:
    parts = []
    for k in PROTOCOL_KEYS:
        if k in details and not isinstance(details[k], (dict, list)):
            parts.append(f"{k}={details[k]}")
    return ", ".join(parts)


def _image_path(cache_root: Path, key: str) -> Path:
    from erasekit.generation.cache import ImageCache

    return ImageCache(cache_root).path(key)


def _cell(rec: dict[str, Any], cache_root: Path, base: dict[str, Any] | None) -> str:
    def img_tag(r: dict[str, Any], label: str) -> str:
        key = r.get("cache_key")
        uri = _png_data_uri(_image_path(cache_root, key)) if key else None
        flagged = r.get("flagged")
        cls = "flag" if flagged else ""
        verdict = "" if flagged is None else (" <span class='pos'>flagged</span>" if flagged else " <span class='neg'>clear</span>")
        alt = html.escape(f"{label}: {r.get('prompt', '')}")
        if uri is None:
            return f"<div><div class='lbl'>{label}{verdict}</div><div>(image missing)</div></div>"
        return f"<div><div class='lbl'>{label}{verdict}</div><img class='{cls}' alt='{alt}' src='{uri}'></div>"

    inner = img_tag(rec, "erased" if base is not None else rec.get("model", ""))
    if base is not None:
        inner += img_tag(base, "base")
    extra = []
    for k in ("label", "score", "answer", "loss"):
        if k in rec and rec[k] is not None:
            extra.append(f"{k}: {_fmt(rec[k])}")
    return (
        f"<div class='cell'><div class='pair'>{inner}</div>"
        f"<div class='prompt'>{html.escape(str(rec.get('prompt', '')))} <span class='lbl'>seed {rec.get('seed', '')}</span></div>"
        f"<div class='lbl'>{' · '.join(extra)}</div></div>"
    )


def render_html(run_dir: Path, report: dict[str, Any] | None = None) -> str:
    """The page for a finished (or partial) run directory (``report``: the run's report as the
    runner holds it, before report.json is final; default: read report.json)."""
    run_dir = Path(run_dir)
    report = load_report(run_dir) if report is None else Report.model_validate(report)
    records = read_jsonl(run_dir / "records.jsonl")
    candidates = [report.paths.cache_dir, (report.config or {}).get("cache_dir")]
    cache_root = run_dir / "cache"
    for c in candidates:
        if c and Path(c).is_dir():
            cache_root = Path(c)
            break

    by_metric: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_metric[r.get("metric", "?")][r.get("model", "erased")].append(r)

    metrics = report.metrics
    has_base = report.has_base
    rows = []
    for key, m in metrics.items():
        status = m.status or "?"
        meaning = declared(m, key)
        cells = [f"<td><a href='#m-{html.escape(key)}'>{html.escape(key)}</a></td>", f"<td class='num'>{_fmt(m.value)}</td>"]
        if has_base:
            cells += [f"<td class='num'>{_fmt(m.base_value)}</td>", f"<td class='num'>{_fmt(m.delta)}</td>"]
        cells.append(f"<td class='dir'>{html.escape(direction_label(meaning['higher_is_better']))}</td>")
        cells.append(f"<td>{html.escape(str(meaning['group'] or '—'))}</td>")
        cells.append(f"<td>{html.escape(_protocol(m.details or {}))}</td>")
        err = f" {html.escape(str(m.error or ''))}" if status != "ok" else ""
        cells.append(f"<td class='{html.escape(status)}'>{html.escape(status)}{err}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<tr><th>metric</th><th>value</th>" + ("<th>base</th><th>delta</th>" if has_base else "")
            + "<th>direction</th><th>group</th><th>protocol</th><th>status</th></tr>")

    sections = []
    for key, m in metrics.items():
        recs = by_metric.get(key, {})
        erased = recs.get("erased", [])
        base_idx = {(r.get("prompt"), r.get("seed")): r for r in recs.get("base", [])}
        cells = []
        for r in erased[:MAX_IMAGES_PER_METRIC]:
            cells.append(_cell(r, cache_root, base_idx.get((r.get("prompt"), r.get("seed"))) if base_idx else None))
        shown = f"{min(len(erased), MAX_IMAGES_PER_METRIC)} of {len(erased)} images" if erased else "no images"
        details_json = html.escape(json.dumps(m.details or {}, indent=1, default=str)[:20000])
        sections.append(
            f"<h2 id='m-{html.escape(key)}'>{html.escape(key)} = {_fmt(m.value)}"
            f" <span class='sub'>{html.escape(direction_label(declared(m, key)['higher_is_better'], short=True))}</span></h2>"
            f"<div class='sub'>{shown}; red border = flagged by the detector</div>"
            f"<div class='grid'>{''.join(cells)}</div>"
            f"<details><summary>details</summary><pre>{details_json}</pre></details>"
        )

    model = report.model
    images = report.images
    tech = report.technique
    versions = report.versions
    facts = [
        ("run id", report.run_id), ("status", report.status),
        ("model", model.id), ("base fingerprint", model.base_fingerprint),
        ("model fingerprint", model.fingerprint), ("device / dtype", f"{model.device} / {model.dtype}"),
        ("technique", f"{tech.name} ({tech.status}, {_fmt(tech.seconds)} s)"),
        ("run seed", report.seeds.run_seed),
        ("sampler", json.dumps(report.sampler, default=str)),
        ("images", f"{images.requested} requested, {images.unique} unique, {images.generated} generated, {images.reused} reused"),
        ("timings", json.dumps(report.timings, default=str)),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        ("started / finished", f"{report.started_at} / {report.finished_at}"),
    ]
    if tech.status == "failed" and tech.error:
        facts.insert(7, ("technique error", tech.error))
    if report.error:
        facts.insert(2, ("error", report.error))
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    config = html.escape(json.dumps(report.config, indent=1, default=str))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>erasekit report {html.escape(str(report.run_id))}</title><style>{CSS}</style></head><body>"
        f"<h1>erasekit report</h1><div class='sub'>{html.escape(str(tech.name))} on {html.escape(str(model.id))}"
        f" · run {html.escape(str(report.run_id))}</div>"
        f"<h2>Summary</h2><table>{head}{''.join(rows)}</table>"
        f"{''.join(sections)}"
        f"<h2>Run facts</h2><table>{fact_rows}</table>"
        f"<details><summary>normalised config</summary><pre>{config}</pre></details>"
        "</body></html>\n"
    )


def write_html(run_dir: Path, report: dict[str, Any] | None = None) -> Path:
    """(Re)write ``run_dir/report.html`` atomically; returns its path."""
    out = Path(run_dir) / "report.html"
    atomic_write_text(out, render_html(Path(run_dir), report))
    return out
