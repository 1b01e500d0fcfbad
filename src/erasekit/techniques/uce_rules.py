"""UCE's options, prompts and token rules: shared by ``uce`` and ``rece`` (RECE starts with a UCE edit).

Unified Concept Editing (Gandikota et al., WACV 2024) edits every cross-attention
``attn2.to_k`` / ``attn2.to_v`` in closed form:

    W' = (λW + e·Σᵢ (W gᵢ) cᵢᵀ + p·Σⱼ (W cⱼ) cⱼᵀ)(λI + e·Σᵢ cᵢcᵢᵀ + p·Σⱼ cⱼcⱼᵀ)⁻¹

with cᵢ the erased concepts' text rows, gᵢ their guides' rows and cⱼ the
preserved ones. Every target is the layer's own weight times a text row, so
W' = W·R with one d × d matrix R shared by all layers
(:func:`erasekit.techniques.closed_form.refinement_matrix`: Grams in float64, one
Cholesky solve). The official code solves each layer separately in float32 with
an explicit inverse; the result is the same up to that rounding.

Which rows (official code, see ``docs/closed_form_reference.md``):

* ``token_rule: last_token`` — the current official script
  (``trainscripts/uce_sd_erase.py``): one row per prompt, the last word token
  (``attention_mask.sum() - 2``; the BOS row for an empty guide). Preserved
  concepts: their last-token row. ``preserve_scale`` default 1.
* ``token_rule: last_token_to_end`` — the 2023 paper-era script
  (``train-scripts/train_erase.py``, the one RECE builds on): erase rows run from
  the concept's last word token to the end of the 77 positions, paired in order
  with the guide's rows from its last word token; the empty prompt is always
  preserved and every preserved prompt contributes all 77 rows; the
  ``preserve_scale`` default is ``max(0.1, 1 / (1 + #preserved))`` as in that script.

This module registers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field, field_validator

from erasekit.errors import ConfigError
from erasekit.techniques.closed_form import Encodings, RowBlock
from erasekit.techniques.editing import EditConfig, as_list, check_guide_list, check_templates

# The five templates the official script appends to each concept with --expand_prompts (the bare concept is kept).
UCE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "art": ("painting by {}", "art by {}", "artwork by {}", "picture by {}", "style of {}"),
    "object": ("image of {}", "photo of {}", "portrait of {}", "picture of {}", "painting of {}"),
}

TokenRule = Literal["last_token", "last_token_to_end"]


class UCEFields(EditConfig):
    """UCE's options, named and defaulted as in the official ``uce_sd_erase.py``.

    * ``guide_concept`` — what each concept is mapped to (a string for all, or one per
      concept); ``null`` = the official default: ``""`` for ``object``, ``"art"`` for ``art``.
    * ``preserve_concepts`` — concepts mapped to themselves (default: none, as official).
    * ``erase_scale`` (1), ``preserve_scale`` (``null`` = 1 for ``last_token``,
      ``max(0.1, 1/(1+#preserved))`` for ``last_token_to_end``), ``lamb`` λ (0.5).
    * ``expand_prompts`` — add the official five templates of ``concept_type`` to each
      erased concept and its guide (off by default, as official).
    * ``concept_type`` — ``object`` or ``art`` (picks the templates and the guide default).
    * ``token_rule`` — ``last_token`` (current script) or ``last_token_to_end`` (2023 script).
    * ``templates`` — erasekit extension: templates put around each concept and its guide
      instead of the official five (the bare concept is always kept; implies expansion).
    """

    guide_concept: str | list[str] | None = Field(None, description="target each concept maps to; null = '' (object) / 'art' (art)")
    preserve_concepts: list[str] = Field(default_factory=list, description="concepts mapped to themselves")
    erase_scale: float = Field(1.0, gt=0.0, le=1e6, description="weight of each erased row")
    preserve_scale: float | None = Field(None, ge=0.0, le=1e6, description="weight of each preserved row (null = the rule's official default)")
    lamb: float = Field(0.5, gt=0.0, le=1e6, description="λ: ridge towards the original weights")
    expand_prompts: bool = Field(False, description="add the official five templates per concept")
    concept_type: Literal["object", "art"] = Field("object", description="object or art (templates and guide default)")
    token_rule: TokenRule = Field("last_token", description="last_token (current official script) or last_token_to_end (2023 script)")
    templates: list[str] | None = Field(None, description="erasekit extension: templates ('{}' = the concept) used instead of the official five")

    @field_validator("guide_concept")
    @classmethod
    def _guide_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and not v:
            raise ValueError("guide_concept must be null, a string, or a non-empty list of strings")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str] | None) -> list[str] | None:
        return check_templates(v, "the official ones")

    @field_validator("preserve_concepts")
    @classmethod
    def _preserve(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("preserve_concepts entries must be non-empty strings")
        return v


def check_uce_fields(config: UCEFields, path: str) -> None:
    check_guide_list(as_list(config.guide_concept), len(as_list(config.erase_concept)), f"{path}.guide_concept")
    if (config.expand_prompts or config.templates) and any("{" in c or "}" in c for c in as_list(config.erase_concept)):
        raise ConfigError(f"{path}.erase_concept", "braces in a concept cannot be put into the templates", "remove '{' and '}' or set expand_prompts: false")


def guides_for(config: UCEFields) -> list[str]:
    """One guide per erased concept (the official broadcast of a single guide)."""
    concepts = as_list(config.erase_concept)
    guides = as_list(config.guide_concept)
    if not guides:
        guides = ["art" if config.concept_type == "art" else ""]
    if len(guides) == 1:
        guides = guides * len(concepts)
    return [g.strip() for g in guides]


def resolved_preserve_scale(config: UCEFields) -> float:
    if config.preserve_scale is not None:
        return config.preserve_scale
    if config.token_rule == "last_token_to_end":
        return max(0.1, 1.0 / (1 + len(config.preserve_concepts)))
    return 1.0


@dataclass
class UCEPlan:
    """Erase pairs (concept prompt, guide prompt) and preserved prompts, in the official order."""

    erase: list[tuple[str, str]] = field(default_factory=list)
    preserve: list[str] = field(default_factory=list)

    def prompts(self) -> list[str]:
        return [*(p for pair in self.erase for p in pair), *self.preserve]


def uce_plan(config: UCEFields) -> UCEPlan:
    """The official prompt lists: each concept (plus its five templates with ``expand_prompts``)
    paired with its guide put in the same template; preserved concepts are never expanded.
    A concept that is also listed to preserve is only erased."""
    concepts = [c.strip() for c in as_list(config.erase_concept)]
    if config.templates is not None:
        templates: tuple[str, ...] = tuple(t for t in config.templates if t != "{}")
    else:
        templates = UCE_TEMPLATES[config.concept_type] if config.expand_prompts else ()
    plan = UCEPlan()
    for concept, guide in zip(concepts, guides_for(config), strict=True):
        plan.erase.append((concept, guide))
        plan.erase.extend((t.format(concept).strip(), t.format(guide).strip()) for t in templates)
    erased = {c.lower() for c in concepts}
    keep = [p.strip() for p in config.preserve_concepts if p.strip().lower() not in erased]
    if config.token_rule == "last_token_to_end":
        keep = ["", *keep]  # the 2023 script always preserves the empty prompt
    plan.preserve = keep
    return plan


def tail_pairs(enc: Encodings, concept: str, guide: str) -> tuple[slice, slice]:
    """The 2023 rule: rows from each prompt's last word token on, shifted so that both spans have
    the same length (77 − max(i, j)) and end inside the sequence."""
    length = enc.hidden.shape[1]
    i, j = enc.last_index(concept), enc.last_index(guide)
    f = max(i, j)
    return slice(i, length - (f - i)), slice(j, length - (f - j))


def uce_rows(enc: Encodings, plan: UCEPlan, token_rule: TokenRule, erase_scale: float, preserve_scale: float) -> list[RowBlock]:
    """The (x, y, weight) rows of UCE's objective for ``plan``'s prompts (encoded in ``enc``)."""
    xs, ys = [], []
    for concept, guide in plan.erase:
        if token_rule == "last_token":
            xs.append(enc.last(concept))
            ys.append(enc.last(guide))
        else:
            sc, sg = tail_pairs(enc, concept, guide)
            xs.append(enc.rows(concept)[sc])
            ys.append(enc.rows(guide)[sg])
    blocks = [RowBlock(torch.cat(xs), torch.cat(ys), erase_scale)]
    if plan.preserve and preserve_scale > 0:
        if token_rule == "last_token":
            rows = torch.cat([enc.last(p) for p in plan.preserve])
        else:
            rows = torch.cat([enc.rows(p) for p in plan.preserve])
        blocks.append(RowBlock(rows, None, preserve_scale))
    return blocks


__all__ = [
    "UCE_TEMPLATES",
    "UCEFields",
    "UCEPlan",
    "check_uce_fields",
    "guides_for",
    "resolved_preserve_scale",
    "tail_pairs",
    "uce_plan",
    "uce_rows",
]
