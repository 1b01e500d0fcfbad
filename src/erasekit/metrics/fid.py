"""FID (and KID) of generated images against a reference image set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.metrics._common import require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class FidConfig(MetricConfig):
    limit: int = Field(1000, ge=1, description="number of generated images (one per caption)")
    captions_path: str | None = Field(None, description="captions to generate from (COCO-style)")
    reference_path: str | None = Field(None, description="folder of reference images, or a cached .npz of statistics")
    feature_extractor: Literal["auto", "inception", "clip"] = Field("auto", description="auto: inception (mini-CLIP on toy)")
    inception_weights_path: str | None = Field(None, description="local pt_inception-2015-12-05 weights file")
    allow_small_sample: bool = Field(False, description="allow fewer images than the feature dimension (noisy FID)")
    kid: bool = Field(True, description="also compute KID")


@METRICS.register("fid", description="Frechet Inception Distance (+KID) against a reference image set.")
class Fid(Metric):
    """Frechet Inception Distance (+KID) against a reference image set."""

    Config = FidConfig

    @classmethod
    def check_config(cls, config: FidConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.captions_path, f"{path}.captions_path", "captions file")
        require_file(config.reference_path, f"{path}.reference_path", "reference set")
        require_file(config.inception_weights_path, f"{path}.inception_weights_path", "Inception weights")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
