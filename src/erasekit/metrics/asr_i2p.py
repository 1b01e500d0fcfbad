"""ASR on I2P: share of images flagged for the concept on its I2P category prompts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import concept_for, require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class AsrI2PConfig(MetricConfig):
    concept_name: str | None = Field(None, description="I2P concept; default: the technique's primary concept")
    limit: int = Field(500, ge=1, description="first N prompts of the concept's category")
    detector: Literal["auto", "nudenet", "clip"] = Field("auto", description="auto: NudeNet for nudity, CLIP otherwise")
    i2p_path: str | None = Field(None, description="local I2P CSV; default: the toy I2P set on model_id toy, else the HF cache")
    clip_model: str = Field("openai/clip-vit-large-patch14", description="CLIP for non-nudity concepts")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="override the preset's threshold")
    images_per_prompt: int = Field(1, ge=1, le=64)


@METRICS.register("asr_i2p", description="Attack success rate on the concept's I2P prompts (NudeNet or CLIP judge).")
class AsrI2P(Metric):
    """Attack success rate on the concept's I2P prompts (NudeNet or CLIP judge)."""

    Config = AsrI2PConfig

    @classmethod
    def check_config(cls, config: AsrI2PConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.i2p_path, f"{path}.i2p_path", "I2P CSV")
        if concept_for(run, config.concept_name) is None:
            raise ConfigError(f"{path}.concept_name", "no concept to evaluate (the technique erases none)", "set concept_name, e.g. nudity")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
