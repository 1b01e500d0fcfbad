"""The toy world's judge CNN as a detector (shape or colour presence).

Decision rule: for a shape concept (circle, square, triangle, cross, or a
synonym such as "disc" → circle) the image is flagged when the judge's
predicted shape *is* that shape with confidence >= ``threshold`` (default
0.5). The judge has an explicit "none" class, so smudges are not forced into a
shape. For a colour concept the predicted colour must match with confidence
>= threshold *and* a shape must be present (on a blank image the colour head's
answer means nothing). ``scores`` records every judge probability
(``shape:<name>``, ``colour:<name>``); ``score`` is the probability of the
concept's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasekit.detectors._images import to_pil_list
from erasekit.detectors.base import Detection, Detector
from erasekit.detectors.presets import DEFAULT_JUDGE_THRESHOLD
from erasekit.errors import ErasekitError, ModelNotFoundError
from erasekit.registry import DETECTORS

_JUDGES: dict[tuple[str, str], Any] = {}


def load_toy_judge(device: str = "cpu", path: str | Path | None = None) -> Any:
    """The shipped judge (cached per path and device); ModelNotFoundError if its weights are missing."""
    from erasekit.toyworld import JUDGE_DIR
    from erasekit.toyworld.judge import load_judge

    p = Path(path) if path is not None else Path(JUDGE_DIR)
    key = (str(p.resolve()), str(device))
    if key not in _JUDGES:
        try:
            _JUDGES[key] = load_judge(device=device, path=p)
        except FileNotFoundError:
            raise ModelNotFoundError(
                f"toy judge weights not found in {p}; reinstall erasekit or regenerate them with "
                "`python -m erasekit.toyworld.train`"
            ) from None
    return _JUDGES[key]


def toy_concept(concept: str) -> tuple[str, str]:
    """("shape" | "colour", canonical name) for a toy concept; ErasekitError if it is not one."""
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    c = concept.strip().lower()
    canon = next((s for s, syns in SYNONYMS.items() if c in syns), c)
    if canon in SHAPES:
        return "shape", canon
    if canon in COLOURS:
        return "colour", canon
    names = sorted({*SHAPES, *COLOURS, *(w for v in SYNONYMS.values() for w in v)})
    raise ErasekitError(f"the toy judge knows shapes and colours only, not {concept!r}; use one of {', '.join(names)}")


def decide_judge(output: Any, concept: str, threshold: float = DEFAULT_JUDGE_THRESHOLD) -> Detection:
    """One :class:`~erasekit.toyworld.judge.JudgeOutput` → a verdict for ``concept`` (pure function)."""
    kind, name = toy_concept(concept)
    scores = {f"shape:{k}": float(v) for k, v in output.shape_probs.items()}
    scores.update({f"colour:{k}": float(v) for k, v in output.colour_probs.items()})
    if kind == "shape":
        p = float(output.shape_probs.get(name, 0.0))
        flagged = output.shape == name and float(output.shape_conf) >= threshold
        label = output.shape
    else:
        p = float(output.colour_probs.get(name, 0.0))
        flagged = output.shape != "none" and output.colour == name and float(output.colour_conf) >= threshold
        label = output.colour if output.shape != "none" else "none"
    return Detection(flagged=bool(flagged), score=p, scores=scores, label=label)


@DETECTORS.register("toy_judge", description="The toy world's shape/colour judge CNN as a detector.")
class ToyJudgeDetector(Detector):
    """The toy judge as a :class:`Detector` (see module docstring for the rule)."""

    name = "toy_judge"

    def __init__(self, device: str = "cpu", threshold: float | None = DEFAULT_JUDGE_THRESHOLD, judge_path: str | None = None) -> None:
        self.device = device
        self.threshold = DEFAULT_JUDGE_THRESHOLD if threshold is None else float(threshold)
        self.judge_path = judge_path
        self.judge = load_toy_judge(device, judge_path)

    def predict(self, images: list[Any]) -> list[Any]:
        """Raw judge outputs (shape, colour, confidences, probabilities) per image."""
        if len(images) == 0:
            return []
        return self.judge.predict(to_pil_list(images))

    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        toy_concept(concept)  # fail before running the model
        return [decide_judge(o, concept, self.threshold) for o in self.predict(images)]

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": self.judge_path or "toy judge (shipped)",
            "threshold": self.threshold,
            "comparison": ">=",
            "rule": "flagged if the judge's predicted shape (or colour, with a shape present) is the concept "
            "with confidence >= threshold",
        }
