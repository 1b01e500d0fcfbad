"""The technique interface: edit a loaded base pipeline in place, deterministically.

A technique knows nothing about metrics. It gets the base pipeline, edits its
weights, and names the edit (``fingerprint``) so that images of two different
edits are never confused in the cache, while the same edit always reuses them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from erasekit.config import TechniqueConfig
from erasekit.utils.canonical import stable_hash

# Fields that say where files go or come from, not what the weights are.
NON_SEMANTIC_FIELDS: frozenset[str] = frozenset({"save_path", "load_path"})


class Technique(ABC):
    """Base class. Subclasses set ``Config`` (a TechniqueConfig subclass) and implement ``apply``."""

    Config: ClassVar[type[TechniqueConfig]] = TechniqueConfig
    #: model families the method runs on (:mod:`erasekit.models.families`); checked before any model loads
    families: ClassVar[tuple[str, ...]] = ("sd1", "sd2", "sdxl")

    def __init__(self, config: TechniqueConfig) -> None:
        self.config = config

    @classmethod
    def concepts(cls, config: TechniqueConfig) -> list[str]:
        """Concepts this technique erases (first = primary). The baseline erases none."""
        return []

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def check_config(cls, config: TechniqueConfig, path: str) -> None:
        """Cross-field checks that need no model. Raise ConfigError(path + '.field', ...)."""

    @abstractmethod
    def apply(self, pipe: Any) -> dict[str, Any]:
        """Edit ``pipe`` in place. Returns details for the report (timings, sizes …)."""

    def fingerprint_payload(self) -> dict[str, Any]:
        """What identifies the edit: every config field except file locations."""
        d = self.config.model_dump(mode="json")
        for k in NON_SEMANTIC_FIELDS:
            d.pop(k, None)
        return d

    def fingerprint(self, base_fingerprint: str, technique_name: str) -> str:
        """Model identity = base weights + technique name + canonical technique config."""
        payload = {"base": base_fingerprint, "technique": technique_name, "config": self.fingerprint_payload()}
        return stable_hash(payload, 16)


class SamplingTechnique(Technique):
    """Base of the inference-time techniques (SLD, negative prompt): no weight changes; ``apply``
    installs the :class:`~erasekit.generation.sampling.SamplingHook` that :meth:`hook` builds, which
    the generation engine then runs for every image. The fingerprint (every config field) keeps
    their images apart from the base model's in the cache."""

    @classmethod
    def concepts(cls, config: TechniqueConfig) -> list[str]:
        from erasekit.techniques.editing import as_list

        return as_list(config.erase_concept)  # type: ignore[attr-defined]

    @abstractmethod
    def hook(self) -> Any:
        """The sampling hook this configuration installs."""

    def apply(self, pipe: Any) -> dict[str, Any]:
        from erasekit.generation.sampling import install

        hook = self.hook()
        install(pipe, hook)
        return {"edited_parameters": 0, "sampling": hook.describe()}

