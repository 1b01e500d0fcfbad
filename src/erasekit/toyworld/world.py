"""The toy world as the one object metrics ask (see :mod:`erasekit.world`).

Vocabulary: four shapes (synonym "disc" → circle) and four colours. Every prompt set has
a generated twin (:mod:`erasekit.datasets.toy`), so every metric runs offline with no file;
CLIP means the shipped mini-CLIP, VQA means the judge answering shape/colour questions, FID
features are mini-CLIP features, and the closed-set judge CNN is the classifier metrics use
where zero-shot CLIP is not accurate enough (measured in ``toyworld/README.md``).
"""

from __future__ import annotations

from typing import ClassVar

from erasekit.concepts import normalise
from erasekit.datasets.items import ReferenceImages, TifaItem
from erasekit.world import PromptSet, World

TOY_SOURCE_NOTE = "(erasekit.datasets.toy)"


class ToyWorld(World):
    name: ClassVar[str] = "toy"
    classifier: ClassVar[str | None] = "toy_judge"
    has_default_prompts: ClassVar[bool] = True

    # ------------------------------------------------------------ vocabulary
    def concept_key(self, concept: str) -> str:
        from erasekit.toyworld import SYNONYMS

        c = normalise(concept)
        return next((s for s, ws in SYNONYMS.items() if c in ws), c)

    def score_key(self, concept: str) -> str:
        from erasekit.detectors.toy_judge import toy_concept

        kind, name = toy_concept(concept)
        return f"{kind}:{name}"

    def check_concept(self, concept: str, field: str) -> str:
        from erasekit.datasets.toy import toy_concept_name

        return toy_concept_name(concept, field)

    def synonyms(self, concept: str) -> list[str]:
        from erasekit.toyworld import SYNONYMS

        c = normalise(concept)
        for canon, syns in SYNONYMS.items():
            if c == canon or c in syns:
                return [c, *(w for w in (canon, *syns) if w != c)]
        return [c]

    # ------------------------------------------------------------ models
    def clip_model(self, requested: str | None, default: str) -> str:
        from erasekit.detectors.clip import TOY_CLIP_ID

        return requested or TOY_CLIP_ID

    def vqa_model(self, requested: str | None, default: str) -> str:
        return requested or "toy"

    def feature_extractor(self, requested: str) -> str:
        return "clip" if requested == "auto" else requested

    def prior_captions(self) -> list[str] | None:
        from erasekit.toyworld import all_captions

        return list(all_captions(include_empty=True))

    # ------------------------------------------------------------ prompt sets
    def prompts_for(self, concept: str, limit: int | None, field: str) -> PromptSet | None:
        from erasekit.datasets.toy import toy_target_prompts

        return PromptSet(toy_target_prompts(concept, limit, field=field), f"toy prompts naming {concept!r} {TOY_SOURCE_NOTE}")

    def retain_prompts_for(self, concept: str, limit: int | None, field: str) -> PromptSet | None:
        from erasekit.datasets.toy import toy_concept_name, toy_retain_prompts
        from erasekit.toyworld import COLOURS, SHAPES

        names = SHAPES if toy_concept_name(concept, field) in SHAPES else COLOURS
        items = toy_retain_prompts(concept, limit, field=field)
        for it in items:  # the concept each retain image must still show: its shape (or colour)
            it.meta["label"] = next(x for x in it.categories if x in names)
        return PromptSet(items, f"toy prompts of the other concepts of {concept!r}'s kind {TOY_SOURCE_NOTE}")

    def i2p(self, path: str | None, concept: str | None, limit: int | None, field: str, concept_field: str) -> PromptSet:
        if path is not None:
            return super().i2p(path, concept, limit, field, concept_field)
        from erasekit.datasets.toy import toy_i2p

        items = toy_i2p(concept, limit, field=concept_field)
        category = self.check_concept(concept, concept_field) if concept is not None else None
        return PromptSet(items, f"toy I2P {TOY_SOURCE_NOTE}", category)

    def i2p_available_without_file(self, concept: str, field: str) -> None:
        self.check_concept(concept, field)

    def captions(self, path: str | None, limit: int | None, field: str) -> PromptSet:
        if path is not None:
            return super().captions(path, limit, field)
        from erasekit.datasets.toy import toy_coco_captions

        return PromptSet(toy_coco_captions(limit), f"toy COCO-like captions {TOY_SOURCE_NOTE}")

    def reference_images(self, path: str | None, limit: int | None, field: str) -> ReferenceImages:
        if path is not None:
            return super().reference_images(path, limit, field)
        from erasekit.datasets.toy import toy_reference_images

        return toy_reference_images(limit)

    def tifa(self, path: str | None, limit: int | None, field: str) -> tuple[list[TifaItem], str | None]:
        if path is not None:
            return super().tifa(path, limit, field)
        from erasekit.datasets.toy import toy_tifa

        return toy_tifa(limit), "toy questions (generated)"
