"""UA / IRA: unlearning accuracy on target prompts, in-domain retain accuracy on retain prompts."""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import concept_for, require_prompt_csv
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class UaIraConfig(MetricConfig):
    target_prompts_path: str | None = Field(None, description="CSV ('prompt' column) of prompts that show the erased concept")
    retain_prompts_path: str | None = Field(None, description="CSV ('prompt' column) of prompts that show a concept to keep")
    target_concept: str | None = Field(None, description="default: the technique's primary concept")
    retain_concept: str | None = Field(None, description="the concept retain prompts should still show")
    target_limit: int | None = Field(None, ge=1)
    retain_limit: int | None = Field(None, ge=1)
    images_per_prompt: int = Field(1, ge=1, le=64)
    clip_model: str = Field("openai/clip-vit-large-patch14")
    threshold: float | None = Field(None, ge=0.0, le=1.0)


@METRICS.register("ua_ira", description="Unlearning accuracy (target gone) and in-domain retain accuracy (others kept).")
class UaIra(Metric):
    """Unlearning accuracy (target gone) and in-domain retain accuracy (others kept)."""

    Config = UaIraConfig

    @classmethod
    def check_config(cls, config: UaIraConfig, run, path: str) -> None:  # type: ignore[override]
        require_prompt_csv(config.target_prompts_path, f"{path}.target_prompts_path")
        require_prompt_csv(config.retain_prompts_path, f"{path}.retain_prompts_path")
        if concept_for(run, config.target_concept) is None:
            raise ConfigError(f"{path}.target_concept", "no target concept (the technique erases none)", "set target_concept")
        if not config.retain_concept:
            raise ConfigError(f"{path}.retain_concept", "required", "name the concept the retain prompts show, e.g. person")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
