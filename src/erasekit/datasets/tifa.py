"""TIFA v1.0 question–answer sets (Hu et al., ICCV 2023).

Format (``tifa_v1.0_question_answers.json``): a JSON list with one entry per
question — ``{"id", "caption", "question", "choices", "answer",
"element_type", "element", ...}``; the entries of one caption share its
``id``. We group them by ``id`` (file order kept) into :class:`TifaItem`s;
``limit`` counts captions. A dict ``{id: [questions...]}`` or a list of
``{"id", "caption", "questions": [...]}`` is accepted too.

Every question needs a non-empty question string, a non-empty list of choices
and an answer; a malformed entry is a ConfigError naming its index. TIFA v1.0
is not bundled: without ``path`` a real run gets a ConfigError telling the user
where to get it; the toy questions are :func:`erasekit.datasets.toy.toy_tifa`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasekit.datasets.io import read_json
from erasekit.datasets.items import TifaItem, TifaQuestion
from erasekit.errors import ConfigError

TIFA_URL = "https://github.com/Yushi-Hu/tifa (tifa_v1.0/tifa_v1.0_question_answers.json)"


def _question(e: Any, where: str, path: Path, field: str) -> TifaQuestion:
    if not isinstance(e, dict):
        raise ConfigError(field, f"{path}: {where} is not an object", "each question must be a JSON object")
    q, choices, ans = e.get("question"), e.get("choices"), e.get("answer")
    if not isinstance(q, str) or not q.strip():
        raise ConfigError(field, f"{path}: {where} has no 'question' string", "fix that entry")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, (str, int, float)) for c in choices):
        raise ConfigError(field, f"{path}: {where} has no non-empty 'choices' list", "fix that entry")
    if not isinstance(ans, (str, int, float)):
        raise ConfigError(field, f"{path}: {where} has no 'answer'", "fix that entry")
    return TifaQuestion(
        question=q.strip(),
        choices=tuple(str(c) for c in choices),
        answer=str(ans),
        element_type=str(e.get("element_type") or ""),
        element=str(e.get("element") or ""),
    )


def load_tifa(path: str | Path | None = None, limit: int | None = None, field: str = "qa_path") -> list[TifaItem]:
    """TIFA items (caption + questions), first ``limit`` captions in file order."""
    if path is None:
        raise ConfigError(field, "no TIFA question-answer file given (TIFA v1.0 is not bundled)", f"download it from {TIFA_URL} and set {field.rsplit('.', 1)[-1]} to its path")
    p = Path(path)
    data = read_json(p, field, "TIFA question-answer JSON")
    groups: dict[str, TifaItem] = {}
    if isinstance(data, dict):
        data = [{"id": k, "questions": v} if isinstance(v, list) else v for k, v in data.items()]
    if not isinstance(data, list):
        raise ConfigError(field, f"{path} is not a list of TIFA questions", f"give tifa_v1.0_question_answers.json ({TIFA_URL})")
    for i, e in enumerate(data):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise ConfigError(field, f"{path}: {where} is not an object", "each entry must be a JSON object")
        cid = str(e.get("id", e.get("caption", i)))
        caption = e.get("caption")
        qs = e.get("questions")
        if (not isinstance(caption, str) or not caption.strip()) and isinstance(qs, list) and qs and isinstance(qs[0], dict):
            caption = qs[0].get("caption")  # {id: [questions carrying the caption]}
        if cid not in groups:
            if not isinstance(caption, str) or not caption.strip():
                raise ConfigError(field, f"{path}: {where} has no 'caption' string", "fix that entry")
            meta = {k: v for k, v in e.items() if k == "coco_val_id"}
            groups[cid] = TifaItem(id=cid, caption=" ".join(caption.split()), questions=[], meta=meta)
        item = groups[cid]
        if isinstance(e.get("questions"), list):
            item.questions += [_question(q, f"{where} question {j}", p, field) for j, q in enumerate(e["questions"])]
        else:
            item.questions.append(_question(e, where, p, field))
    items = [g for g in groups.values() if g.questions]
    if not items:
        raise ConfigError(field, f"{path} contains no questions", f"give tifa_v1.0_question_answers.json ({TIFA_URL})")
    return items[:limit] if limit is not None else items
