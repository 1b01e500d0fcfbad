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

    def fingerprint(self, base_fingerprint: str, technique_name: str) -> str:
        """The weights are the base weights, so the identity is the base identity: a
        baseline run and the base half of a ``compare_to_base`` run share cached images."""
        return base_fingerprint
