"""CLIP score: mean over images of max(100·cos(image, caption), 0) (torchmetrics definition).

One image per caption (the first ``limit`` captions of ``captions_path``: a COCO
captions JSON or a CSV with a ``caption``/``prompt`` column; seed = the row's seed
column, else its index). Presets:

``standard`` (default)
    ``s_i = max(100·cos(E_I, E_C), 0)`` with ``E`` the CLIP joint-space embeddings
    (``get_image_features`` / ``get_text_features``, L2-normalised), default model
    ViT-L/14 (``openai/clip-vit-large-patch14``, torchmetrics' default);
    value = mean of ``s_i``. Note: torchmetrics' ``CLIPScore.compute`` clamps the
    *mean* rather than each image; the two agree whenever no image has a negative
    cosine (always the case with real CLIP on real captions). ``details`` reports
    ``n_negative_cos`` so a disagreement is visible.
``mace``
    The MACE paper's script: ``logits_per_image`` = ``logit_scale·cos`` (= 100·cos
    for OpenAI CLIP), no clamp, default model ViT-B/32 (``openai/clip-vit-base-patch32``).

In the toy world the default model is the mini-CLIP (its learned logit scale is
~14, so the ``mace`` preset's numbers are on another scale there than ``standard``'s).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from erasekit.assets import require_hf_model
from erasekit.config import MetricConfig
from erasekit.detectors.select import check_clip_model
from erasekit.errors import ConfigError
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.metrics.common import (
    get_detector,
    images_of,
    prompt_requests,
    require_file,
    require_images,
    require_items,
)
from erasekit.registry import METRICS

PRESETS = {
    "standard": "torchmetrics CLIPScore: mean of max(100*cos, 0), ViT-L/14 (default)",
    "mace": "MACE paper: mean of logit_scale*cos without the clamp at 0, ViT-B/32",
}
DEFAULT_MODELS = {"standard": "openai/clip-vit-large-patch14", "mace": "openai/clip-vit-base-patch32"}

class ClipScoreConfig(MetricConfig):
    limit: int = Field(300, ge=1, description="number of captions (one image each)")
    clip_model: str | None = Field(None, min_length=1, description="default: ViT-L/14 (standard) or ViT-B/32 (preset mace); mini-CLIP on toy")
    captions_path: str | None = Field(None, description="COCO-style captions (CSV 'prompt'/'caption' column or captions JSON)")


def preset_name(config: ClipScoreConfig) -> str:
    return (config.preset or "standard").strip().lower()


@METRICS.register("clip_score", description="Text-image alignment: mean max(100*cos, 0) on COCO captions.")
class ClipScore(Metric[ClipScoreConfig]):
    """Text-image alignment: mean max(100*cos, 0) on COCO captions."""

    higher_is_better: ClassVar[bool] = True
    group: ClassVar[str] = "quality"
    presets: ClassVar[dict[str, str]] = PRESETS
    example: ClassVar[dict[str, Any]] = {"limit": 2}

    @classmethod
    def check_config(cls, config: ClipScoreConfig, run, path: str) -> None:  # type: ignore[override]
        if config.preset is not None and preset_name(config) not in PRESETS:
            raise ConfigError(f"{path}.preset", f"unknown preset {config.preset!r}", f"use one of {', '.join(PRESETS)}")
        require_file(config.captions_path, f"{path}.captions_path", "captions file")
        if config.clip_model:
            check_clip_model(config.clip_model, f"{path}.clip_model")

    @classmethod
    def check_assets(cls, config: ClipScoreConfig, run, path: str) -> None:  # type: ignore[override]
        if config.captions_path is None and not run.world.has_default_prompts:
            raise ConfigError(f"{path}.captions_path", "no captions file (COCO captions are not bundled)",
                              "set captions_path to a captions CSV or COCO captions_*.json")
        require_hf_model(run.world.clip_model(config.clip_model, DEFAULT_MODELS[preset_name(config)]), f"{path}.clip_model", "CLIP model")

    @property
    def default_models(self) -> dict[str, str]:  # type: ignore[override]  # the preset picks the CLIP
        return {"clip_model": DEFAULT_MODELS[preset_name(self.config)]}

    def setup(self) -> None:
        cfg = self.config
        self.captions = self.world.captions(cfg.captions_path, cfg.limit, self.field("captions_path"))
        require_items(self.captions.items, self.field("captions_path"), "caption set")

    def requests(self):
        return prompt_requests(self.captions.items, 1, row_guidance=False)

    def compute(self, images) -> MetricResult:
        import torch

        cfg = self.config
        items = self.captions.items
        require_images(images, len(items), "clip_score")
        preset = preset_name(cfg)
        model = self.world.clip_model(cfg.clip_model, DEFAULT_MODELS[preset])
        clip = get_detector(self.ctx, cfg, "clip", field=self.field("clip_model"), clip_model=model)
        captions = [it.prompt for it in items]
        with torch.no_grad():
            ie = clip.image_embeddings(images_of(images))
            te = clip.text_embeddings(captions)
        cos = (ie * te).sum(-1).double()
        scale = float(clip.logit_scale)
        per_image = (cos * scale) if preset == "mace" else (100.0 * cos).clamp(min=0.0)
        records = [
            image_record(img, caption=cap, cos=float(c), clip_score=float(s))
            for img, cap, c, s in zip(images, captions, cos.tolist(), per_image.tolist(), strict=True)
        ]
        details = {
            "preset": preset,
            "definition": "mean over images of logit_scale*cos(image, caption), no clamp (MACE)" if preset == "mace"
            else "mean over images of max(100*cos(image, caption), 0) (torchmetrics CLIPScore)",
            "clip_model": model,
            "clip_source": getattr(clip, "source", model),
            "logit_scale": round(scale, 4),
            "embeddings": "get_image_features / get_text_features (projected), L2-normalised",
            "captions": {"source": self.captions.source, "limit": cfg.limit, "n": len(captions)},
            "n_images": len(images),
            "mean_cos": float(cos.mean()),
            "mean_100cos_unclamped": float((100.0 * cos).mean()),
            "n_negative_cos": int((cos < 0).sum()),
            "std": float(per_image.std()) if len(images) > 1 else 0.0,
        }
        return MetricResult(value=float(per_image.mean()), details=details, records=records)
