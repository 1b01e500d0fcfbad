"""The unedited base model: the baseline every comparison needs."""

from __future__ import annotations

from typing import Any

from erasekit.registry import TECHNIQUES
from erasekit.techniques.base import Technique


@TECHNIQUES.register("none", description="The unedited base model (baseline for every comparison).", aliases=("baseline",))
class NoneTechnique(Technique):
    """The unedited base model (baseline for every comparison)."""

    def apply(self, pipe: Any) -> dict[str, Any]:
        return {"edited_parameters": 0}
