"""ASR on user prompts: share of images in which a CLIP judge sees the concept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import concept_for, require_prompt_csv
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class AsrCustomConfig(MetricConfig):
    concept: str | None = Field(None, description="concept to detect; default: the technique's primary concept")
    prompts_path: str | None = Field(None, description="CSV with a 'prompt' column (optional 'seed')")
    prompts: list[str] | None = Field(None, min_length=1, description="prompts given inline")
    limit: int | None = Field(None, ge=1)
    images_per_prompt: int = Field(1, ge=1, le=64)
    detector: Literal["auto", "clip", "nudenet", "toy_judge"] = Field("auto", description="auto: CLIP (mini-CLIP on toy)")
    clip_model: str = Field("openai/clip-vit-large-patch14")
    threshold: float | None = Field(None, ge=0.0, le=1.0)


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
        if concept_for(run, config.concept) is None:
            raise ConfigError(f"{path}.concept", "no concept to detect (the technique erases none)", "set concept")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
