"""Visual question answering for TIFA: BLIP-VQA, or the toy judge in the toy world.

``VQA.answer(images, questions)`` returns free-form answers (one per
image/question pair); :func:`snap_to_choice` maps a free-form answer onto the
question's multiple choices. TIFA's reference code snaps with SBERT sentence
embeddings; erasekit snaps lexically so TIFA needs no second model, in this
order (first rule that decides wins):

1. normalised exact match (lower case, punctuation and articles dropped,
   "grey"→"gray", number words → digits: "three" → "3");
2. yes/no questions: an answer starting with yes/yeah/yep/true → "yes",
   no/not/nope/false/none → "no";
3. containment: the longest choice whose words all occur in the answer (or
   the choice containing all of the answer's words);
4. word overlap (Jaccard) > 0: the choice sharing most words;
5. character similarity (``difflib`` ratio): the most similar choice.

Ties go to the earlier choice. An abstention ("none", "nothing", "unknown",
an empty answer) that matches no choice returns None — "no usable answer",
counted wrong — instead of a near-random choice ("none" → "0" when counting).
With ``min_similarity > 0`` rule 5 may also return None.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erasekit.detectors._images import to_pil_list
from erasekit.errors import ModelNotFoundError
from erasekit.models.loading import looks_like_local_path
from erasekit.registry import DETECTORS

DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"

_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}
_SPELLING = {"grey": "gray", "colour": "color", "colours": "colors", "coloured": "colored"}
_ARTICLES = {"a", "an", "the"}
_YES = ("yes", "yeah", "yep", "true", "correct")
_NO = ("no", "not", "nope", "false", "none", "nothing")
_ABSTAIN = ("none", "nothing", "unknown", "no answer", "not sure", "cannot tell", "can t tell", "n a")


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, US spelling, digits for number words."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    words = [_NUMBERS.get(w, _SPELLING.get(w, w)) for w in words if w not in _ARTICLES]
    return " ".join(words)


def snap_to_choice(answer: str, choices: Sequence[str], min_similarity: float = 0.0) -> str | None:
    """Map a free-form VQA answer onto one of ``choices`` (rules in the module docstring).

    Returns a choice, or None for an abstaining answer (and, with ``min_similarity`` > 0,
    for an answer resembling no choice): the caller counts None as wrong.
    """
    choices = list(choices)
    if not choices:
        raise ValueError("snap_to_choice needs at least one choice")
    a = normalise_answer(answer)
    norm = [normalise_answer(c) for c in choices]
    # 1. exact
    for c, n in zip(choices, norm, strict=True):
        if n == a:
            return c
    a_words = a.split()
    # 2. yes / no
    if set(norm) == {"yes", "no"} and a_words:
        if a_words[0] in _YES:
            return choices[norm.index("yes")]
        if a_words[0] in _NO:
            return choices[norm.index("no")]
    # 2b. abstentions: "none" means 0 when counting, otherwise no usable answer
    if a in _ABSTAIN or not a:
        if a in ("none", "nothing") and "0" in norm:
            return choices[norm.index("0")]
        return None
    a_set = set(a_words)
    # 3. containment
    contained = [(len(n), -i) for i, n in enumerate(norm) if n and set(n.split()) <= a_set]
    if contained:
        return choices[-max(contained)[1]]
    if a_set:
        containing = [i for i, n in enumerate(norm) if a_set <= set(n.split())]
        if containing:
            return choices[containing[0]]
    # 4. word overlap
    best, best_j = 0.0, -1
    for i, n in enumerate(norm):
        ws = set(n.split())
        if ws and a_set:
            j = len(ws & a_set) / len(ws | a_set)
            if j > best:
                best, best_j = j, i
    if best_j >= 0:
        return choices[best_j]
    # 5. character similarity
    ratios = [difflib.SequenceMatcher(None, a, n).ratio() for n in norm]
    i = max(range(len(choices)), key=lambda k: (ratios[k], -k))
    if ratios[i] < min_similarity:
        return None
    return choices[i]


class VQA:
    """Interface: free-form answers to one question per image."""

    name = "vqa"

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def answer_choices(
        self, images: Sequence[Any], questions: Sequence[str], choices: Sequence[Sequence[str]], min_similarity: float = 0.0
    ) -> list[tuple[str, str | None]]:
        """(free-form answer, snapped choice) per pair."""
        free = self.answer(images, questions)
        return [(f, snap_to_choice(f, ch, min_similarity)) for f, ch in zip(free, choices, strict=True)]

    def protocol(self) -> dict[str, Any]:
        return {"vqa": self.name, "snapping": "lexical (exact, yes/no, containment, word overlap, difflib)"}


def _check_pairs(images: Sequence[Any], questions: Sequence[str]) -> None:
    if len(images) != len(questions):
        raise ValueError(f"answer() takes one question per image: got {len(images)} images and {len(questions)} questions")


class BlipVQA(VQA):
    """transformers ``BlipForQuestionAnswering`` loaded offline (a local folder or an HF id in the cache).

    Answers are generated greedily (``max_new_tokens`` tokens, default 10) in batches.
    """

    name = "blip_vqa"

    def __init__(self, vqa_model: str = DEFAULT_VQA_MODEL, device: str = "cpu", batch_size: int = 16,
                 max_new_tokens: int = 10, field: str = "vqa_model") -> None:
        from transformers import BlipForQuestionAnswering, BlipProcessor

        self.vqa_model, self.device, self.batch_size, self.max_new_tokens = vqa_model, device, int(batch_size), int(max_new_tokens)
        p = Path(vqa_model).expanduser()
        is_dir = p.is_dir()
        if not is_dir and looks_like_local_path(vqa_model):
            raise ModelNotFoundError(f"{field}: BLIP-VQA folder {vqa_model} not found; set {field} to a BlipForQuestionAnswering folder")
        ident = str(p) if is_dir else vqa_model
        try:
            self.model = BlipForQuestionAnswering.from_pretrained(ident, local_files_only=True).to(device).eval()
            self.processor = BlipProcessor.from_pretrained(ident, local_files_only=True)
        except (OSError, ValueError) as exc:
            if is_dir:
                raise ModelNotFoundError(f"{field}: cannot load BLIP-VQA from {ident} ({exc.__class__.__name__}: {str(exc)[:200]})") from None
            raise ModelNotFoundError(
                f"{field}: BLIP-VQA model '{vqa_model}' is not in the local Hugging Face cache (erasekit never downloads "
                f"at run time). Fix: run `huggingface-cli download {vqa_model}` once with network access, or set {field} "
                "to a local BlipForQuestionAnswering folder"
            ) from None

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        import torch

        _check_pairs(images, questions)
        pil = to_pil_list(images)
        out: list[str] = []
        with torch.no_grad():
            for i in range(0, len(pil), self.batch_size):
                enc = self.processor(images=pil[i : i + self.batch_size], text=list(questions[i : i + self.batch_size]),
                                     padding=True, return_tensors="pt").to(self.device)
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
                out += [s.strip() for s in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "model": self.vqa_model, "max_new_tokens": self.max_new_tokens}


@DETECTORS.register("toy_vqa", description="Toy-world VQA: the judge answers shape/colour questions.")
class ToyVQA(VQA):
    """Answers shape / colour questions about toy images with the toy judge.

    Understood: "what shape ...?" → the judge's shape ("none" if no clear shape);
    "what colo(u)r ...?" → its colour; yes/no questions ("is there a red circle?",
    "is the shape blue?", "is this a disc?") → "yes" iff every shape and colour
    word in the question matches the judge (a shape must be present);
    "how many ...?" → "1" or "0". Anything else → "unknown".
    """

    name = "toy_vqa"

    def __init__(self, device: str = "cpu", judge_path: str | None = None) -> None:
        from erasekit.detectors.toy_judge import load_toy_judge

        self.device, self.judge_path = device, judge_path
        self.judge = load_toy_judge(device, judge_path)

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        _check_pairs(images, questions)
        if len(images) == 0:
            return []
        outs = self.judge.predict(to_pil_list(images))
        return [answer_from_judge(o, q) for o, q in zip(outs, questions, strict=True)]

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "vqa": self.name, "model": self.judge_path or "toy judge (shipped)"}


def answer_from_judge(output: Any, question: str) -> str:
    """Answer one question from a judge output (pure function; rules in :class:`ToyVQA`)."""
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    words = normalise_answer(question).split()
    syn = {w: s for s, ws in SYNONYMS.items() for w in ws}

    def shape_of(w: str) -> str | None:
        for cand in (w, w[:-1] if w.endswith("s") else "", w[:-2] if w.endswith("es") else ""):
            cand = syn.get(cand, cand)
            if cand in SHAPES:
                return cand
        return None

    shape_words = [s for s in map(shape_of, words) if s is not None]
    colour_words = [w for w in words if w in COLOURS]
    present = output.shape != "none"
    if not words:
        return "unknown"
    if words[0] in ("what", "which"):
        if "color" in words:
            return output.colour if present else "none"
        if "shape" in words or "object" in words or "is" in words:
            return output.shape
        return "unknown"
    if words[0] == "how" and "many" in words:
        return "1" if present else "0"
    if words[0] in ("is", "are", "does", "do", "can"):
        if not present:
            return "no"
        ok = all(w == output.shape for w in shape_words) and all(w == output.colour for w in colour_words)
        if not shape_words and not colour_words and "shape" not in words:
            return "unknown"
        return "yes" if ok else "no"
    return "unknown"


def make_vqa(vqa_model: str = DEFAULT_VQA_MODEL, device: str = "cpu", field: str = "vqa_model", **kwargs: Any) -> VQA:
    """``vqa_model="toy"`` → :class:`ToyVQA`; anything else → :class:`BlipVQA` (``field``: the config
    path named in a missing-model error)."""
    if vqa_model == "toy":
        return ToyVQA(device=device, judge_path=kwargs.get("judge_path"))
    return BlipVQA(vqa_model=vqa_model, device=device, field=field, **kwargs)


DETECTORS.register("vqa", description="VQA for TIFA: BLIP-VQA from a local folder/HF cache, or vqa_model='toy'.")(make_vqa)
