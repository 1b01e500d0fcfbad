"""CLIP score: mean over images of max(100·cos(image, caption), 0) (torchmetrics definition)."""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS

CLIP_SCORE_PRESETS = ("standard", "mace")


class ClipScoreConfig(MetricConfig):
    limit: int = Field(300, ge=1, description="number of captions (one image each)")
    clip_model: str | None = Field(None, description="default: ViT-L/14 (standard) or ViT-B/32 (preset mace); mini-CLIP on toy")
    captions_path: str | None = Field(None, description="COCO-style captions (CSV 'prompt'/'caption' column or captions JSON)")


@METRICS.register("clip_score", description="Text-image alignment: mean max(100*cos, 0) on COCO captions.")
class ClipScore(Metric):
    """Text-image alignment: mean max(100*cos, 0) on COCO captions."""

    Config = ClipScoreConfig

    @classmethod
    def check_config(cls, config: ClipScoreConfig, run, path: str) -> None:  # type: ignore[override]
        if config.preset is not None and config.preset not in CLIP_SCORE_PRESETS:
            raise ConfigError(f"{path}.preset", f"unknown preset {config.preset!r}", f"use one of {', '.join(CLIP_SCORE_PRESETS)}")
        require_file(config.captions_path, f"{path}.captions_path", "captions file")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
