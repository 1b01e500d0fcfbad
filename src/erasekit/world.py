"""The world a run's model lives in: its concept vocabulary, default prompt sets and judges.

Metrics never branch on "is this the toy model?". They ask the run's :class:`World`:
which CLIP or VQA model to use when the config leaves it open, which prompt set to use when
none is given, whether a concept is one the world can judge, which words mean the same
concept. :class:`World` answers for real diffusers models (Stable Diffusion): prompt sets
come from files or the local HF cache, judges are the published ones.
:class:`erasekit.toyworld.world.ToyWorld` answers for the embedded toy world, whose every
dataset has a generated twin and whose closed-set judge CNN is its best detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from erasekit.concepts import i2p_category, normalise
from erasekit.datasets.items import PromptItem, ReferenceImages, TifaItem


@dataclass
class PromptSet:
    """Prompt rows plus where they came from (for the report) and, for I2P, the category used."""

    items: list[PromptItem]
    source: str
    category: str | None = None


class World:
    """Stable Diffusion and any other real diffusers model: data from files or the local HF cache."""

    name: ClassVar[str] = "diffusers"
    #: detector name of a closed-set classifier that judges this world's concepts better than
    #: zero-shot CLIP (None: there is none; NudeNet still judges nudity)
    classifier: ClassVar[str | None] = None
    #: whether :meth:`prompts_for` / :meth:`retain_prompts_for` return prompt sets
    has_default_prompts: ClassVar[bool] = False

    # ------------------------------------------------------------ vocabulary
    def concept_key(self, concept: str) -> str:
        """The form two concept names are compared in ("Nudity " and "nudity" are one concept)."""
        return normalise(concept)

    def score_key(self, concept: str) -> str:
        """The key of ``concept``'s probability in the world classifier's ``Detection.scores``."""
        return self.concept_key(concept)

    def check_concept(self, concept: str, field: str) -> str:
        """The concept as this world's judges know it; ConfigError naming ``field`` if they cannot."""
        return concept.strip()

    def synonyms(self, concept: str) -> list[str]:
        """``concept`` and the words that mean the same thing in this world's prompts."""
        return [normalise(concept)]

    # ------------------------------------------------------------ models
    def clip_model(self, requested: str | None, default: str) -> str:
        return requested or default

    def vqa_model(self, requested: str | None, default: str) -> str:
        return requested or default

    def feature_extractor(self, requested: str) -> str:
        """FID features: ``auto`` is the standard Inception network."""
        return "inception" if requested == "auto" else requested

    def prior_captions(self) -> list[str] | None:
        """Captions that describe this world's typical images (None: use a generic list)."""
        return None

    # ------------------------------------------------------------ prompt sets
    def prompts_for(self, concept: str, limit: int | None, field: str) -> PromptSet | None:
        """Prompts that show ``concept`` when no prompt file is given (None: a file is required)."""
        return None

    def retain_prompts_for(self, concept: str, limit: int | None, field: str) -> PromptSet | None:
        """Prompts of concepts that should survive erasing ``concept`` (None: a file is required)."""
        return None

    def i2p(self, path: str | None, concept: str | None, limit: int | None, field: str, concept_field: str) -> PromptSet:
        from erasekit.datasets.i2p import load_i2p

        items = load_i2p(path, concept, limit, field=field, concept_field=concept_field)
        source = str(items[0].meta.get("source", path)) if items else str(path)
        category = i2p_category(concept, concept_field) if concept is not None else None
        return PromptSet(items, source, category)

    def i2p_available_without_file(self, concept: str, field: str) -> None:
        """Validation: a concept I2P cannot evaluate is a ConfigError before any model loads."""
        i2p_category(concept, field)

    def captions(self, path: str | None, limit: int | None, field: str) -> PromptSet:
        from erasekit.datasets.coco import load_coco_captions

        return PromptSet(load_coco_captions(path, limit, field=field), str(path))

    def reference_images(self, path: str | None, limit: int | None, field: str) -> ReferenceImages:
        from erasekit.datasets.coco import coco_reference_images

        return coco_reference_images(path, limit, field=field)

    def tifa(self, path: str | None, limit: int | None, field: str) -> tuple[list[TifaItem], str | None]:
        from erasekit.datasets.tifa import load_tifa

        return load_tifa(path, limit, field=field), path


@lru_cache(maxsize=64)
def world_for(model_id: str) -> World:
    """The world of a model id: the toy world for ``toy`` (or its shipped folder), else :class:`World`.
    Worlds hold no state, so one instance per model id serves every metric."""
    from erasekit.toyworld import PIPELINE_DIR, TOY_MODEL_ID

    if model_id == TOY_MODEL_ID:
        from erasekit.toyworld.world import ToyWorld

        return ToyWorld()
    try:
        if Path(model_id).expanduser().resolve() == Path(PIPELINE_DIR).resolve():
            from erasekit.toyworld.world import ToyWorld

            return ToyWorld()
    except (OSError, ValueError):
        pass
    return World()
