"""ASR on user prompts: share of images in which a CLIP judge sees the concept.

Same definition as ``asr_i2p`` (ASR = flagged images / generated images, one
record per image, an empty prompt set is an error) on prompts you give:
``prompts_path`` (CSV with a ``prompt`` column, optional seed / guidance columns
as in ESD/MACE CSVs) or ``prompts`` (a list; image seeds = the prompt's index).
The judge is concept-agnostic CLIP zero-shot (``detector: auto``; NudeNet or the
toy judge on request); ``contrast_captions`` adds classes the concept must beat
(e.g. "a photo of a dog" when detecting "cat"). On ``model_id: toy`` the judge
is the mini-CLIP and, without prompts, the concept's toy target prompts are used.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, field_validator

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import (
    concept_for,
    config_path,
    prompt_requests,
    require_images,
    require_prompt_csv,
)
from erasekit.metrics.asr_i2p import (
    asr_result,
    build_detector,
    check_detector_fields,
    concept_mismatch,
    resolve_detector_name,
)
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS

log = logging.getLogger(__name__)


class AsrCustomConfig(MetricConfig):
    concept: str | None = Field(None, min_length=1, description="concept to detect; default: the technique's primary concept")
    prompts_path: str | None = Field(None, description="CSV with a 'prompt' column (optional 'seed')")
    prompts: list[str] | None = Field(None, min_length=1, description="prompts given inline")
    limit: int | None = Field(None, ge=1)
    images_per_prompt: int = Field(1, ge=1, le=64)
    detector: Literal["auto", "clip", "nudenet", "toy_judge"] = Field("auto", description="auto: CLIP (mini-CLIP on toy); NudeNet for nudity")
    clip_model: str = Field("openai/clip-vit-large-patch14")
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    contrast_captions: list[str] | None = Field(
        None, min_length=1, description="extra CLIP classes the concept must beat (generic CLIP only)"
    )

    @field_validator("prompts")
    @classmethod
    def _no_blank_prompts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for i, p in enumerate(v):
                if not p.strip():
                    raise ValueError(f"prompt {i} is empty")
        return v


@METRICS.register("asr_custom", description="Attack success rate on your own prompts, for any concept (CLIP judge).")
class AsrCustom(Metric):
    """Attack success rate on your own prompts, for any concept (CLIP judge)."""

    Config = AsrCustomConfig

    @classmethod
    def check_config(cls, config: AsrCustomConfig, run, path: str) -> None:  # type: ignore[override]
        if config.prompts_path and config.prompts:
            raise ConfigError(f"{path}.prompts", "both prompts and prompts_path are set", "keep one of them")
        if config.prompts_path:
            require_prompt_csv(config.prompts_path, f"{path}.prompts_path")
        elif not config.prompts and not run.technique_config.is_toy:
            raise ConfigError(f"{path}.prompts_path", "no prompts given", "set prompts_path (CSV with a 'prompt' column) or prompts (a list)")
        concept = concept_for(run, config.concept)
        if concept is None:
            raise ConfigError(f"{path}.concept", "no concept to detect (the technique erases none)", "set concept")
        where = f"{path}.concept" if config.concept else "technique.config.erase_concept"
        check_detector_fields(config, concept, path, run, where)
        if config.contrast_captions and resolve_detector_name(config.detector, concept) != "clip":
            raise ConfigError(f"{path}.contrast_captions", "contrast captions apply to the CLIP judge only", "remove them or use detector: clip")
        warning = concept_mismatch(run, concept)
        if warning:
            log.warning("%s: %s", path, warning)

    def _setup(self) -> None:
        if getattr(self, "_items", None) is not None:
            return
        from erasekit.datasets import load_prompt_csv, toy_target_prompts
        from erasekit.datasets.items import PromptItem

        cfg: AsrCustomConfig = self.config  # type: ignore[assignment]
        self._path = config_path(self.ctx, cfg)
        concept = concept_for(self.ctx.run, cfg.concept)
        if concept is None:
            raise ConfigError(f"{self._path}.concept", "no concept to detect", "set concept")
        self._concept = concept
        if cfg.prompts_path:
            items = load_prompt_csv(cfg.prompts_path, cfg.limit, field=f"{self._path}.prompts_path")
            self._source = cfg.prompts_path
        elif cfg.prompts:
            items = [PromptItem(prompt=p, meta={"row": i}) for i, p in enumerate(cfg.prompts)]
            items = items[: cfg.limit] if cfg.limit is not None else items
            self._source = "prompts (inline list)"
        elif self.ctx.is_toy:
            items = toy_target_prompts(concept, cfg.limit, field=f"{self._path}.concept")
            self._source = "toy target prompts (erasekit.datasets.toy)"
        else:
            raise ConfigError(f"{self._path}.prompts_path", "no prompts given", "set prompts_path or prompts")
        if not items:
            raise ConfigError(f"{self._path}.prompts", "the prompt set is empty (an empty set is an error, never an ASR of 0)",
                              "give at least one prompt")
        self._items = items

    def requests(self):
        self._setup()
        return prompt_requests(self._items, self.config.images_per_prompt)

    def compute(self, images):
        self._setup()
        cfg: AsrCustomConfig = self.config  # type: ignore[assignment]
        require_images(images, len(self._items) * cfg.images_per_prompt, "asr_custom")
        name = resolve_detector_name(cfg.detector, self._concept)
        detector = build_detector(self.ctx, cfg, name, self._path, contrast=cfg.contrast_captions)
        warning = concept_mismatch(self.ctx.run, self._concept)
        details = {
            "concept": self._concept,
            "technique_concepts": self.ctx.concepts,
            "concept_matches_technique": warning is None,
            "prompt_set": {"source": self._source, "limit": cfg.limit},
            "row_seeds": "each row's seed column (row index when absent); image j of a row: seed + j*1000000",
        }
        if warning:
            details["warning"] = warning
        return asr_result(images, detector, self._concept, self._items, cfg.images_per_prompt, details)
