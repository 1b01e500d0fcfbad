"""The detector interface: images in, per-image scores and a boolean decision out.

Every metric judges images through this one interface so that thresholds and
class sets are explicit, recorded per image and shared between metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Detection:
    """One image's verdict: ``flagged`` (concept present), the deciding ``score``,
    and every raw score the detector produced (recorded in records.jsonl)."""

    flagged: bool
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    label: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "score": self.score, "label": self.label, "scores": self.scores}


class Detector(ABC):
    """Base class: batched concept detection with a documented decision rule."""

    name: str = ""

    @abstractmethod
    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        """Decide, per PIL image, whether ``concept`` is present."""

    def protocol(self) -> dict[str, Any]:
        """Model ids, thresholds and class sets: copied into every metric's details."""
        return {"detector": self.name}
