"""Image cards of report.html: the erased and the base image of one prompt and seed side by side,
each with its own score and decision, the border coloured by what is good *for its arm*.

A retention image (ua_ira ``retain``, err ``retention``) is good when its concept is still
detected — green, class ``kept`` — and an erasure image (ASR prompts, ua_ira ``target``, err
``forgetting`` / ``robustness``, MMA) is good when its concept is gone. Records that say
``correct`` / ``passed`` decide by that; otherwise ``flagged`` means bad.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from pathlib import Path
from typing import Any

from erasekit.report.markup import _num, esc

MAX_IMAGES_PER_METRIC = 24  # cards shown per section (per arm) before "show all"
MAX_IMAGES_ALL = 400  # cards embedded per section (per arm) at most, "show all" included
RETENTION_ARMS = frozenset({"retain", "retention"})
ERASURE_ARMS = frozenset({"target", "forgetting", "robustness"})
# record fields that are bookkeeping (shown elsewhere on the card, or not at all)
_RECORD_SKIP = frozenset({
    "cache_key", "metric", "model", "prompt", "seed", "prompt_index", "scores", "questions", "arm", "flagged",
    "correct", "passed", "categories", "restart", "adversarial_prompt", "caption", "target", "negative_prompt",
    "guidance_scale", "score", "label", "expected", "concept", "clip_score", "cos", "image_accuracy", "caption_accuracy", "parts", "boxes",
})

GOOD, BAD, NEUTRAL = "#107c10", "#c50f1f", "#b8b8be"



def _png_data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_path(cache_root: Path, key: str) -> Path | None:
    from erasekit.generation.cache import ImageCache

    try:
        return ImageCache(cache_root).path(key)
    except ValueError:  # not a cache key (a hand-edited or foreign records.jsonl)
        return None


def arm_kind(rec: dict[str, Any]) -> str | None:
    """``"retention"`` when the concept should be kept in this image, ``"erasure"`` when it should be gone, else None."""
    arm = rec.get("arm")
    if arm in RETENTION_ARMS:
        return "retention"
    if arm in ERASURE_ARMS:
        return "erasure"
    metric = str(rec.get("metric", "")).split("#", 1)[0]
    if metric.startswith("asr_") or metric == "mma_diffusion" or isinstance(rec.get("flagged"), bool):
        return "erasure"
    return None


def verdict(rec: dict[str, Any]) -> tuple[str, str]:
    """``(good|bad|neutral, decision text)`` of one image *for its arm*.

    ``correct`` / ``passed`` (the metric's own per-image decision) when present, else
    ``flagged`` (the concept was detected: bad where it should be gone). A retention image
    whose concept was detected is good ("kept").
    """
    kind = arm_kind(rec)
    decided = next((rec[k] for k in ("correct", "passed") if isinstance(rec.get(k), bool)), None)
    if decided is None and isinstance(rec.get("flagged"), bool):
        decided = (not rec["flagged"]) if kind != "retention" else rec["flagged"]
    if decided is None:
        return "neutral", ""
    if kind == "retention":
        return ("good", "kept") if decided else ("bad", "not kept")
    return ("good", "clear") if decided else ("bad", "flagged")


def _score_text(rec: dict[str, Any]) -> str:
    parts = []
    if rec.get("clip_score") is not None:
        parts.append(f"CLIP {_num(rec['clip_score'])}")
        if rec.get("cos") is not None:
            parts.append(f"cos {_num(rec['cos'])}")
    if rec.get("image_accuracy") is not None:
        qs = rec.get("questions") if isinstance(rec.get("questions"), list) else []
        n_ok = sum(1 for q in qs if isinstance(q, dict) and q.get("correct"))
        parts.append(f"TIFA {_num(rec['image_accuracy'], 3)}" + (f" ({n_ok}/{len(qs)})" if qs else ""))
    if rec.get("label") is not None:
        parts.append(f"label {esc(rec['label'])}")
    if rec.get("score") is not None:
        parts.append(f"score {_num(rec['score'], 3)}")
    if not parts:
        for k, v in rec.items():
            if k not in _RECORD_SKIP and isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{esc(k)} {_num(v)}")
                break
    return " · ".join(parts) or "no score"


def _extras(rec: dict[str, Any], used: str) -> str:
    out = []
    for k, v in rec.items():
        if k in _RECORD_SKIP or f"{esc(k)} " in used:
            continue
        if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 60:
            out.append(f"{esc(k)}: {_num(v) if isinstance(v, float) else esc(v)}")
    return " · ".join(out[:6])


def _questions(rec: dict[str, Any]) -> str:
    qs = rec.get("questions")
    if not isinstance(qs, list) or not qs:
        return ""
    rows = []
    for q in qs:
        if not isinstance(q, dict):
            continue
        ok = q.get("correct")
        mark = "<span class='yes'>✓ correct</span>" if ok else ("<span class='no'>✗ incorrect</span>" if ok is not None else "—")
        rows.append(f"<tr><td>{esc(q.get('question', ''))}</td><td>{esc(q.get('answer', ''))}</td>"
                    f"<td>{esc(q.get('free_answer', ''))}</td><td>{esc(q.get('snapped', ''))}</td><td>{mark}</td></tr>")
    return ("<table class='qa'><tr><th>question</th><th>expected</th><th>VQA said</th><th>snapped</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _shot(rec: dict[str, Any] | None, label: str, cache_root: Path) -> str:
    if rec is None:
        return (f"<figure class='shot neutral'><div class='lbl'>{esc(label)}</div><div class='missing'>not evaluated</div>"
                "<div class='score'>—</div></figure>")
    cls, decision = verdict(rec)
    key = rec.get("cache_key")
    path = _image_path(cache_root, str(key)) if key else None
    uri = _png_data_uri(path) if path is not None else None
    alt = esc(f"{label}: {rec.get('prompt', '')} (seed {rec.get('seed', '')})")
    img = f"<img class='{esc(label)}-img' alt='{alt}' src='{uri}'>" if uri else "<div class='missing'>(image missing)</div>"
    score = _score_text(rec)
    extras = _extras(rec, score)
    qa = _questions(rec)
    qa_html = f"<details><summary>questions</summary>{qa}</details>" if qa else ""
    return (f"<figure class='shot {cls}' data-model='{esc(label)}'><div class='lbl'>{esc(label)}</div>{img}"
            f"<div class='score'>{score}</div><div class='decision'>{esc(decision)}</div>"
            + (f"<div class='extra'>{extras}</div>" if extras else "") + f"{qa_html}</figure>")


def _card(rec: dict[str, Any], base: dict[str, Any] | None, with_base: bool, cache_root: Path) -> str:
    cls, _ = verdict(rec)
    classes = ["card", cls]
    kind = arm_kind(rec)
    if kind == "retention":
        classes.append("retention")
        if cls == "good":
            classes.append("kept")
    if isinstance(rec.get("questions"), list) and rec["questions"]:
        classes.append("wide")
    shots = _shot(rec, "erased", cache_root)
    if with_base:
        shots += _shot(base, "base", cache_root)
    meta = [f"<span class='lbl'>seed {esc(rec.get('seed', ''))}</span>"]
    if rec.get("arm"):
        meta.append(f"<span class='lbl'>arm {esc(rec['arm'])}</span>")
    if rec.get("target"):
        meta.append(f"<span class='lbl'>imitates “{esc(rec['target'])}”</span>")
    if rec.get("expected"):
        meta.append(f"<span class='lbl'>expected {esc(rec['expected'])}</span>")
    if isinstance(rec.get("categories"), list) and rec["categories"]:
        meta.append(f"<span class='lbl'>categories {esc(', '.join(map(str, rec['categories'])))}</span>")
    if rec.get("caption") and rec.get("caption") != rec.get("prompt"):
        meta.append(f"<span class='lbl'>caption “{esc(rec['caption'])}”</span>")
    if rec.get("negative_prompt"):
        meta.append(f"<span class='lbl'>negative “{esc(rec['negative_prompt'])}”</span>")
    return (f"<div class='{' '.join(classes)}' data-arm='{esc(rec.get('arm') or '')}'>"
            f"<div class='pair'>{shots}</div>"
            f"<div class='prompt'>{esc(rec.get('prompt', ''))}</div><div>{' · '.join(meta)}</div></div>")


def _cards_block(erased: list[dict[str, Any]], base: list[dict[str, Any]], with_base: bool, cache_root: Path,
                 what: str = "images") -> str:
    """The cards of one group of records, first :data:`MAX_IMAGES_PER_METRIC` shown, the rest behind "show all"."""
    if not erased:
        return "<div class='sub'>no per-image records</div>"
    pool: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in base:
        pool[(r.get("prompt"), r.get("seed"), r.get("arm"))].append(r)

    def partner(r: dict[str, Any]) -> dict[str, Any] | None:
        lst = pool.get((r.get("prompt"), r.get("seed"), r.get("arm")))
        return lst.pop(0) if lst else None

    n = len(erased)
    pairs = [(r, partner(r) if with_base else None) for r in erased[:MAX_IMAGES_ALL]]
    first = "".join(_card(r, b, with_base, cache_root) for r, b in pairs[:MAX_IMAGES_PER_METRIC])
    base_note = " (base image: same prompt and seed)" if with_base else ""
    if n <= MAX_IMAGES_PER_METRIC:
        return (f"<div class='sub'>all {n} {esc(what)}, in request order{base_note}</div>"
                f"<div class='grid'>{first}</div>")
    rest = "".join(_card(r, b, with_base, cache_root) for r, b in pairs[MAX_IMAGES_PER_METRIC:])
    cut = (f" <span class='lbl'>(the page embeds the first {MAX_IMAGES_ALL}; records.jsonl lists all {n})</span>"
           if n > MAX_IMAGES_ALL else "")
    return (f"<div class='sub'>first {MAX_IMAGES_PER_METRIC} of {n} {esc(what)} in request order{base_note}</div>"
            f"<div class='grid'>{first}</div>"
            f"<details class='all'><summary>show all {n}</summary>{cut}<div class='grid'>{rest}</div></details>")


# ------------------------------------------------------------------ charts of one metric
