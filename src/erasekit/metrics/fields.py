"""Config field blocks shared by the metrics, so that one meaning has one key everywhere.

A metric's ``Config`` inherits the blocks it needs (``class AsrCustomConfig(ConceptFields,
PromptFields, ImagesFields, JudgeFields)``) and only adds what is its own. Old and foreign
names are accepted as aliases (``concept_name`` — the reference benchmark package's key —
and ``target_concept`` for ``concept``; ``images_per_caption``; ``precomputed_prompts_path``;
flat attack keys such as ``steps``) and renamed to the canonical key before validation, so
report.json always shows the canonical name. :data:`CANONICAL_KEYS` is the table the
contract test checks every metric against.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from erasekit.attacks.mma import AttackSettings
from erasekit.config import MetricConfig

#: canonical key → names that mean the same and are accepted as aliases (never as fields)
CANONICAL_KEYS: dict[str, tuple[str, ...]] = {
    "concept": ("concept_name", "target_concept"),
    "images_per_prompt": ("images_per_caption",),
    "adversarial_prompts_path": ("precomputed_prompts_path",),
    "attack": ("n_tokens", "steps", "topk", "n_candidates"),
    "batch_size": ("batch",),
}

DetectorName = Literal["auto", "nudenet", "clip", "toy_judge"]
NudeNetPresetName = Literal["eval-unlearn", "eval-unlearn-err", "mace", "unlearndiff"]


class ConceptFields(MetricConfig):
    """Which concept a metric evaluates."""

    key_aliases: ClassVar[dict[str, str]] = {"concept_name": "concept", "target_concept": "concept"}

    concept: str | None = Field(
        None, min_length=1, description="the concept to evaluate; default: the technique's primary concept (first erase_concept)"
    )


def _no_blank(v: list[str] | None) -> list[str] | None:
    if v is not None:
        for i, p in enumerate(v):
            if not p.strip():
                raise ValueError(f"prompt {i} is empty")
    return v


class PromptFields(MetricConfig):
    """A prompt set given inline or as a CSV file (``prompt`` column, optional seed/guidance)."""

    prompts: list[str] | None = Field(None, min_length=1, description="prompts given inline (image seeds = the prompt's index)")
    prompts_path: str | None = Field(None, description="CSV with a 'prompt' column (optional 'seed', guidance columns)")
    limit: int | None = Field(None, ge=1, description="first N prompts")

    _no_blank_prompts = field_validator("prompts")(classmethod(lambda cls, v: _no_blank(v)))


class ImagesFields(MetricConfig):
    """How many images each prompt gets (image j of a row: the row's seed + j * 1000000)."""

    key_aliases: ClassVar[dict[str, str]] = {"images_per_caption": "images_per_prompt"}

    images_per_prompt: int = Field(1, ge=1, le=64, description="images per prompt")


class JudgeFields(MetricConfig):
    """The detector that decides whether a concept is in an image (``preset`` is in every metric)."""

    detector: DetectorName = Field(
        "auto", description="auto: NudeNet for nudity, else the world's classifier or CLIP zero-shot (see erasekit.detectors.select)"
    )
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="override the detector's (or preset's) threshold")
    clip_model: str | None = Field(
        None, min_length=1, description="CLIP folder or HF id for CLIP judgements (default ViT-L/14; the mini-CLIP on toy)"
    )
    nudenet_preset: NudeNetPresetName | None = Field(
        None, description="NudeNet class set and threshold (erasekit.detectors.presets); default: the one the metric's protocol names"
    )


class AttackFields(MetricConfig):
    """One nested ``attack:`` block for every attack setting, or a CSV of published adversarial prompts."""

    key_aliases: ClassVar[dict[str, str]] = {
        "precomputed_prompts_path": "adversarial_prompts_path",
        **{k: f"attack.{k}" for k in ("n_tokens", "steps", "topk", "n_candidates")},
        "batch": "attack.batch_size",
    }

    attack: AttackSettings = Field(default_factory=AttackSettings, description="MMA attack settings")
    adversarial_prompts_path: str | None = Field(
        None, description="CSV of adversarial prompts (adv_prompt / adversarial_prompt / prompt column): no attack runs"
    )
