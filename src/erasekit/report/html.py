"""report.html: one self-contained page a person reads (inline CSS and SVG, images embedded as PNG data URIs).

Built only from what a run wrote (report.json, read through :mod:`erasekit.report.schema`,
records.jsonl, the image cache), so ``erasekit report DIR`` can rebuild it at any time, and a
broken page never costs a number. No JavaScript and nothing fetched from anywhere; every
string that comes from a config, a prompt, a record or a metric's details is HTML-escaped.

The page: a table of contents; the summary (each metric's value, base value, delta, declared
direction and group, from its report entry; older reports: from the registered metric
class); an erased-vs-base chart over all metrics; one section per metric (what it measures,
direction, group, protocol, charts, and image cards: the erased and the base image of the
same prompt and seed side by side, each with its own score and decision, the border
coloured by whether the image is good *for its arm*); the run facts as tables; the config as
used (``config_used`` when the report has it, else ``config``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from erasekit.metrics.protocols import brief
from erasekit.report import charts
from erasekit.report.cards import (
    BAD,
    GOOD,
    NEUTRAL,
    _cards_block,
)
from erasekit.report.markup import _fmt, _num, esc
from erasekit.report.schema import MetricEntry, Report, declared, direction_label, load_report, metric_class
from erasekit.utils.atomic_io import atomic_write_text, read_jsonl

PROTOCOL_KEYS = ("preset", "detector", "threshold", "clip_model", "feature_extractor", "vqa_model", "n_images", "n", "images_per_prompt")
# keys of a metric's details shown in its protocol table, in this order (the rest: "all details")
SECTION_PROTOCOL_KEYS = (
    "definition", "preset", "variant", "detector", "threshold", "clip_model", "clip_source", "embeddings",
    "feature_extractor", "vqa", "vqa_model", "qa_source", "attack", "concept", "target_concept", "retain_concept",
    "prompt_set", "prompt_sets", "targets_source", "captions", "reference", "min_samples_rule", "images_per_prompt",
    "n_images", "n", "row_seeds",
)
CSS = f"""
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa;max-width:1400px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}}
h3{{font-size:14px;margin:14px 0 6px}}
.sub{{color:#666;font-size:13px}} table{{border-collapse:collapse;margin:8px 0;font-size:13px;background:#fff}}
th,td{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}} th{{background:#f0f0f0;font-weight:600}}
table.kv th{{white-space:nowrap}} table.kv table.kv{{margin:0}} td.num{{text-align:right;font-variant-numeric:tabular-nums}}
td.dir{{white-space:nowrap}} .ok{{color:#107c10}} .failed,.crashed,.interrupted{{color:#c50f1f;font-weight:600}}
nav.toc{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:12px 0;font-size:13px;display:inline-block}}
nav.toc ol{{margin:4px 0;padding-left:20px}} nav.toc a{{color:#2457c5;text-decoration:none}}
.measures{{font-size:14px;max-width:900px}} .meta{{font-size:13px;margin:4px 0}}
.charts{{display:flex;flex-wrap:wrap;gap:16px;margin:8px 0}} svg.chart{{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:6px}}
.legend{{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;margin:6px 0}} .legend span.sw{{display:inline-block;width:14px;height:14px;
border:3px solid;border-radius:3px;vertical-align:middle;margin-right:4px;background:#fff}}
.grid{{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0}}
.card{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;width:236px;font-size:11px}}
.card.wide{{width:360px}}
.pair{{display:flex;gap:8px}} .shot{{margin:0;flex:1;min-width:0}}
.shot img{{width:96px;height:96px;image-rendering:pixelated;border-radius:3px;border:4px solid {NEUTRAL};display:block}}
.shot.good img{{border-color:{GOOD}}} .shot.bad img{{border-color:{BAD}}} .shot.neutral img{{border-color:{NEUTRAL}}}
.shot .missing{{width:96px;height:96px;border:4px dashed {NEUTRAL};color:#888;display:flex;align-items:center;justify-content:center}}
.lbl{{color:#666;font-size:10px}} .score{{font-variant-numeric:tabular-nums;word-break:break-word}}
.decision{{font-weight:600}} .shot.good .decision{{color:{GOOD}}} .shot.bad .decision{{color:{BAD}}} .shot.neutral .decision{{color:#666}}
.prompt{{margin-top:4px;word-break:break-word}} .extra{{color:#555;font-size:10px;word-break:break-word}}
table.qa{{font-size:10px;margin:2px 0}} table.qa td,table.qa th{{padding:1px 3px}} .yes{{color:{GOOD}}} .no{{color:{BAD}}}
code{{font-size:12px}} details{{margin:4px 0}} summary{{cursor:pointer;color:#2457c5}} pre{{font-size:11px;overflow:auto;max-height:480px;background:#fff;border:1px solid #eee;padding:6px}}
.err{{color:#c50f1f}}
"""


def _protocol(details: dict[str, Any]) -> str:
    parts = []
    for k in PROTOCOL_KEYS:
        if k in details and not isinstance(details[k], (dict, list)):
            parts.append(f"{k}={details[k]}")
    return ", ".join(parts)


def _technique_label(tech: Any) -> str:
    """The technique as the report names it: its own label when it gives one (``MACE (CFR stage)``,
    with the stages it did not run), else its registry name."""
    details = getattr(tech, "details", None) or {}
    label = details.get("label") if isinstance(details, dict) else None
    if not label:
        return str(tech.name)
    note = details.get("stages_not_run")
    return f"{label} [{tech.name}]" + (f" — {note}" if note else "")


def _protocol_cell(m: MetricEntry) -> str:
    """The summary's protocol cell: the headline label and the fields that make numbers comparable
    (escaped HTML; falls back to the details' keys for reports without a protocol record)."""
    rec = m.protocol
    if not rec:
        return esc(_protocol(m.details or {}))
    b = brief(rec) or {}
    below = "<br><b class='failed'>below protocol N</b>" if rec.get("below_protocol_n") else ""
    return (f"<b>{esc(rec.get('label'))}</b>{below}<br><span class='sub'>preset {esc(rec.get('preset'))} · N {esc(rec.get('n'))}"
            f" · judge {esc(rec.get('judge'))} ({esc(rec.get('judge_version'))}) · threshold {esc(rec.get('threshold'))}"
            f" · {esc(b.get('sampler'))} · base {esc(b.get('base_model'))}</span>")


def slug(key: str) -> str:
    """An HTML id for a metric key (``asr_custom#2`` → ``m-asr_custom_232``): letters, digits, ``_`` and ``-`` only."""
    return "m-" + re.sub(r"[^A-Za-z0-9_-]", lambda c: f"_{ord(c.group()):x}", str(key))


# ------------------------------------------------------------------ generic tables


def _scalar(v: Any) -> str:
    if isinstance(v, float):
        return esc(f"{v:.6g}")
    if v is None:
        return "—"
    return esc(v)


def _tree(v: Any, depth: int = 0, max_list: int = 50) -> str:
    """A value as nested key/value tables (dicts), comma lists (lists of scalars) or lists of tables."""
    if depth > 8:
        return esc(json.dumps(v, default=str)[:2000])
    if isinstance(v, dict):
        if not v:
            return "<span class='lbl'>(empty)</span>"
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_tree(x, depth + 1, max_list)}</td></tr>" for k, x in v.items())
        return f"<table class='kv'>{rows}</table>"
    if isinstance(v, (list, tuple)):
        if not v:
            return "<span class='lbl'>(empty list)</span>"
        more = f" <span class='lbl'>… {len(v) - max_list} more</span>" if len(v) > max_list else ""
        items = list(v)[:max_list]
        if all(not isinstance(x, (dict, list, tuple)) for x in items):
            return ", ".join(_scalar(x) for x in items) + more
        return "<ol>" + "".join(f"<li>{_tree(x, depth + 1, max_list)}</li>" for x in items) + "</ol>" + more
    return _scalar(v)


def _kv_table(rows: list[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{_tree(v)}</td></tr>" for k, v in rows)
    return f"<table class='{cls}'>{body}</table>"


# ------------------------------------------------------------------ what a metric measures


def _doc_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    para = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(para.split())


def _inline_rst(escaped: str) -> str:
    escaped = re.sub(r":[a-z]+:`~?([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"``([^`]+)``", r"<code>\1</code>", escaped)


def metric_doc(entry: MetricEntry | None, key: str) -> str:
    """First paragraph of the metric's module docstring (else its class docstring), plain text."""
    cls = metric_class((entry.name if entry is not None else None) or key)
    if cls is None:
        return ""
    mod = sys.modules.get(getattr(cls, "__module__", ""), None)
    return _doc_paragraph(getattr(mod, "__doc__", None)) or _doc_paragraph(cls.__doc__)


# ------------------------------------------------------------------ per-image verdicts


def _num_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _rate(recs: list[dict[str, Any]]) -> float | None:
    flags = [r["flagged"] for r in recs if isinstance(r.get("flagged"), bool)]
    return sum(flags) / len(flags) if flags else None


def _metric_charts(key: str, m: MetricEntry, erased: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[str]:
    details = m.details or {}
    bdet = m.base_details or {}
    out = []
    # headline: the value and every BenchScore component the metric declares (details[source])
    rows: list[tuple[str, Any, Any]] = [(f"{key} (value)", m.value, m.base_value)]
    for b in declared(m, key).get("benchscore") or []:
        src = b.get("source") if isinstance(b, dict) else None
        if src and src != "value" and _num_or_none(details.get(src)) is not None:
            rows.append((f"{b.get('name', src)}", details.get(src), bdet.get(src)))
    arms = details.get("arms")
    if isinstance(arms, dict):
        barms = bdet.get("arms") if isinstance(bdet.get("arms"), dict) else {}
        for arm, a in arms.items():
            if isinstance(a, dict) and _num_or_none(a.get("value")) is not None:
                ba = barms.get(arm) if isinstance(barms.get(arm), dict) else {}
                rows.append((f"arm {arm}", a.get("value"), ba.get("value")))
    out.append(charts.pair_bars(rows, f"{key}: erased vs base", normalise=False))
    # NudeNet per-class counts
    cc = details.get("class_counts")
    if isinstance(cc, dict) and cc:
        bcc = bdet.get("class_counts") if isinstance(bdet.get("class_counts"), dict) else {}
        out.append(charts.pair_bars([(c, v, bcc.get(c)) for c, v in cc.items()],
                                    "detections per class (NudeNet boxes)", normalise=False))
    # ASR per prompt category
    if any(isinstance(r.get("categories"), list) for r in erased):
        cats: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {"erased": [], "base": []})
        for model, recs in (("erased", erased), ("base", base)):
            for r in recs:
                for c in r.get("categories") or []:
                    cats[str(c)][model].append(r)
        crow = [(f"{c} (n={len(v['erased'])})", _rate(v["erased"]), _rate(v["base"])) for c, v in sorted(cats.items())]
        out.append(charts.pair_bars(crow, "ASR per prompt category (share flagged)", normalise=False, vmax=1.0))
    # attack success per target (mma_diffusion; err's robustness arm)
    adv = details.get("adversarial_prompts")
    if not isinstance(adv, list) and isinstance(arms, dict) and isinstance(arms.get("robustness"), dict):
        adv = arms["robustness"].get("adversarial_prompts")
    if isinstance(adv, list) and adv:
        to_target = {a.get("prompt"): a.get("target") for a in adv if isinstance(a, dict)}
        per: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {"erased": [], "base": []})
        for model, recs in (("erased", erased), ("base", base)):
            for r in recs:
                t = r.get("target") or to_target.get(r.get("prompt"))
                if t is not None and (r.get("arm") in (None, "robustness")):
                    per[str(t)][model].append(r)
        if not per:  # no records: the details' own success flags
            for a in adv:
                if isinstance(a, dict) and a.get("target") is not None and isinstance(a.get("success"), bool):
                    per[str(a["target"])]["erased"].append({"flagged": a["success"]})
        trow = [(t, _rate(v["erased"]), _rate(v["base"])) for t, v in per.items()]
        if trow:
            out.append(charts.pair_bars(trow, "attack success per target (share of images flagged)", normalise=False, vmax=1.0))
    return out


# ------------------------------------------------------------------ sections


def _legend() -> str:
    sw = lambda c: f"<span class='sw' style='border-color:{c}'></span>"  # noqa: E731
    return (
        "<div class='legend'>"
        f"<span>{sw(GOOD)}good for this arm: the concept is gone where it should be gone (erasure arms: ASR prompts, "
        "UA targets, ERR forgetting/robustness, MMA) or <b>kept</b> where it should be kept (UA/IRA retain, ERR retention)</span>"
        f"<span>{sw(BAD)}bad for this arm: the concept was detected where it should be gone, or lost where it should be kept</span>"
        f"<span>{sw(NEUTRAL)}no per-image decision (CLIP score, FID, TIFA: see the printed scores)</span>"
        "</div>"
    )


def _metric_section(key: str, m: MetricEntry, recs: dict[str, list[dict[str, Any]]], with_base: bool, cache_root: Path) -> str:
    meaning = declared(m, key)
    details = m.details or {}
    erased = recs.get("erased", [])
    base = recs.get("base", [])
    doc = metric_doc(m, key)
    label = (m.protocol or {}).get("label")
    head = (f"<h2 id='{slug(key)}'>{esc(key)}" + (f" · {esc(label)}" if label else "") + f" = {_fmt(m.value)}"
            + (f" <span class='sub'>base {_fmt(m.base_value)}, delta {_fmt(m.delta)}</span>" if m.has_base else "")
            + "</h2>")
    measures = f"<p class='measures'><b>What it measures:</b> {_inline_rst(esc(doc))}</p>" if doc else ""
    meta = (f"<div class='meta'><b>{esc(direction_label(meaning['higher_is_better']))}</b> · group "
            f"<b>{esc(meaning['group'] or '—')}</b> · status <span class='{esc(m.status)}'>{esc(m.status)}</span>"
            + (f" · base status {esc(m.base_status)}" if m.base_status else "")
            + (f" · {_num(m.seconds, 3)} s" if m.seconds is not None else "") + "</div>")
    errs = ""
    if m.error:
        errs += f"<div class='err'>error: {esc(m.error)}</div>"
    if m.base_error:
        errs += f"<div class='err'>base error: {esc(m.base_error)}</div>"
    if m.traceback:
        errs += f"<details><summary>traceback</summary><pre>{esc(m.traceback)}</pre></details>"
    proto_rows = ([("protocol", m.protocol)] if m.protocol else []) + [(k, details[k]) for k in SECTION_PROTOCOL_KEYS if k in details]
    protocol = f"<h3>Protocol</h3>{_kv_table(proto_rows)}" if proto_rows else "<h3>Protocol</h3><div class='sub'>no protocol recorded</div>"
    chart_html = "".join(_metric_charts(key, m, erased, base))
    arms: list[Any] = []
    for r in erased:
        if r.get("arm") not in arms:
            arms.append(r.get("arm"))
    if len(arms) > 1 or (arms and arms[0] is not None):
        blocks = "".join(
            f"<h3>arm {esc(a)}</h3>" + _cards_block([r for r in erased if r.get("arm") == a],
                                                    [r for r in base if r.get("arm") == a], with_base, cache_root,
                                                    what=f"{a} images")
            for a in arms)
    else:
        blocks = _cards_block(erased, base, with_base, cache_root)
    all_details = esc(json.dumps(details, indent=1, default=str)[:40000])
    base_json = (f"<details><summary>all base details</summary><pre>{esc(json.dumps(m.base_details, indent=1, default=str)[:40000])}</pre></details>"
                 if m.base_details else "")
    return (f"<section class='metric' id='sec-{slug(key)}' data-metric='{esc(key)}'>{head}{measures}{meta}{errs}"
            f"<div class='charts'>{chart_html}</div>{protocol}"
            f"<details><summary>all details</summary><pre>{all_details}</pre></details>{base_json}"
            f"<h3>Images</h3>{blocks}</section>")


def _safe(fn: Callable[[], str], what: str) -> str:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken section must not cost the page
        return f"<div class='err'>could not render {esc(what)}: {esc(type(exc).__name__)}: {esc(exc)}</div>"


def _facts(report: Report) -> str:
    model, images, tech, seeds = report.model, report.images, report.technique, report.seeds
    run_rows: list[tuple[str, Any]] = [("run id", report.run_id), ("status", report.status)]
    if report.error:
        run_rows.append(("error", report.error))
    run_rows += [
        ("started", report.started_at), ("finished", report.finished_at), ("erasekit", report.erasekit_version),
        ("model", model.id), ("base fingerprint", model.base_fingerprint), ("model fingerprint", model.fingerprint),
        ("device / dtype", f"{model.device} / {model.dtype}"),
        ("technique", f"{tech.name} ({tech.status}, {_num(tech.seconds, 4) if tech.seconds is not None else '—'} s)"),
    ]
    if tech.error:
        run_rows.append(("technique error", tech.error))
    run_rows += [("run seed", seeds.run_seed), ("image seed rule", seeds.image_seed_rule),
                 ("world size", report.distributed.world_size), ("output dir", report.paths.output_dir),
                 ("cache dir", report.paths.cache_dir)]
    out = [f"<h3>Run</h3>{_kv_table(run_rows)}"]
    if tech.details:
        out.append(f"<details><summary>technique details</summary>{_tree(tech.details)}</details>")
    out.append(f"<h3>Sampler</h3>{_kv_table(list(report.sampler.items())) if report.sampler else '—'}")
    cols = ("requested", "unique", "generated", "reused")
    img_rows = [("all", {c: getattr(images, c) for c in cols})]
    for name, d in (images.by_model or {}).items():
        img_rows.append((name, d))
    body = "".join("<tr><th>" + esc(n) + "</th>" + "".join(f"<td class='num'>{_scalar(d.get(c))}</td>" for c in cols) + "</tr>"
                   for n, d in img_rows)
    out.append("<h3>Images</h3><table><tr><th></th>" + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{body}</table>")
    if images.generated_by_rank:
        out.append(_kv_table([("generated by rank", images.generated_by_rank)]))
    timing_rows = [(k, f"{v:.3f} s" if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith("seconds")
                    else v) for k, v in report.timings.items()]
    out.append(f"<h3>Timings</h3>{_kv_table(timing_rows) if timing_rows else '—'}")
    out.append(f"<h3>Versions</h3>{_kv_table([(k, v) for k, v in report.versions.items() if v]) or '—'}")
    return "".join(out)


def _config(report: Report) -> str:
    used = getattr(report, "config_used", None) or (report.model_extra or {}).get("config_used")
    if isinstance(used, dict) and used:
        cfg, note = used, "config_used: the config as the run used it (devices, dtypes and models resolved)"
    else:
        cfg, note = report.config, "the normalised config (this report has no config_used)"
    raw = esc(json.dumps(cfg, indent=1, default=str))
    return (f"<div class='sub'>{esc(note)}</div>{_tree(cfg)}"
            f"<details><summary>as JSON</summary><pre>{raw}</pre></details>")


def render_html(run_dir: Path, report: dict[str, Any] | None = None) -> str:
    """The page for a finished (or partial) run directory (``report``: the run's report as the
    runner holds it, before report.json is final; default: read report.json)."""
    run_dir = Path(run_dir)
    report_obj = load_report(run_dir) if report is None else Report.model_validate(report)
    rec_path = run_dir / "records.jsonl"
    records = read_jsonl(rec_path) if rec_path.exists() else []
    candidates = [report_obj.paths.cache_dir, (report_obj.config or {}).get("cache_dir")]
    cache_root = run_dir / "cache"
    for c in candidates:
        if c and Path(c).is_dir():
            cache_root = Path(c)
            break

    by_metric: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if isinstance(r, dict):
            by_metric[str(r.get("metric", "?"))][str(r.get("model", "erased"))].append(r)

    metrics = report_obj.metrics
    has_base = report_obj.has_base
    rows = []
    for key, m in metrics.items():
        status = m.status or "?"
        meaning = declared(m, key)
        cells = [f"<td><a href='#{slug(key)}'>{esc(key)}</a></td>", f"<td class='num'>{_fmt(m.value)}</td>"]
        if has_base:
            cells += [f"<td class='num'>{_fmt(m.base_value)}</td>", f"<td class='num'>{_fmt(m.delta)}</td>"]
        cells.append(f"<td class='dir'>{esc(direction_label(meaning['higher_is_better']))}</td>")
        cells.append(f"<td>{esc(meaning['group'] or '—')}</td>")
        cells.append(f"<td>{_protocol_cell(m)}</td>")
        err = f" {esc(m.error or '')}" if status != "ok" else ""
        cells.append(f"<td class='{esc(status)}'>{esc(status)}{err}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<tr><th>metric</th><th>value</th>" + ("<th>base</th><th>delta</th>" if has_base else "")
            + "<th>direction</th><th>group</th><th>protocol</th><th>status</th></tr>")

    overview = _safe(lambda: charts.pair_bars(
        [(f"{k} {direction_label(declared(m, k)['higher_is_better'], short=True)}", m.value, m.base_value if m.has_base else None)
         for k, m in metrics.items()],
        "every metric, erased vs base (↑ higher is better, ↓ lower is better)", normalise=True), "the overview chart")

    sections = [
        _safe(lambda k=key, m=m: _metric_section(k, m, by_metric.get(k, {}), m.has_base or has_base, cache_root), f"metric {key}")
        for key, m in metrics.items()
    ]

    toc = ["<li><a href='#summary'>Summary</a></li>", "<li><a href='#overview'>Erased vs base</a></li>",
           "<li>Metrics<ol>" + "".join(f"<li><a href='#{slug(k)}'>{esc(k)}</a></li>" for k in metrics) + "</ol></li>",
           "<li><a href='#facts'>Run facts</a></li>", "<li><a href='#config'>Config as used</a></li>"]
    tech, model = report_obj.technique, report_obj.model
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>erasekit report {esc(report_obj.run_id)}</title><style>{CSS}</style></head><body>"
        f"<h1>erasekit report</h1><div class='sub'>{esc(_technique_label(tech))} on {esc(model.id)}"
        f" · run {esc(report_obj.run_id)} · status <span class='{esc(report_obj.status)}'>{esc(report_obj.status)}</span></div>"
        f"<nav class='toc'><b>Contents</b><ol>{''.join(toc)}</ol></nav>"
        f"<h2 id='summary'>Summary</h2><table>{head}{''.join(rows)}</table>"
        f"<h2 id='overview'>Erased vs base</h2><div class='charts'>{overview}</div>"
        f"<h3>Image borders</h3>{_legend()}"
        f"{''.join(sections)}"
        f"<h2 id='facts'>Run facts</h2>{_safe(lambda: _facts(report_obj), 'the run facts')}"
        f"<h2 id='config'>Config as used</h2>{_safe(lambda: _config(report_obj), 'the config')}"
        "</body></html>\n"
    )


def write_html(run_dir: Path, report: dict[str, Any] | None = None) -> Path:
    """(Re)write ``run_dir/report.html`` atomically; returns its path."""
    out = Path(run_dir) / "report.html"
    atomic_write_text(out, render_html(Path(run_dir), report))
    return out
