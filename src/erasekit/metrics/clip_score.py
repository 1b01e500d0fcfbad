"""CLIP score: mean over images of max(100·cos(image, caption), 0) (torchmetrics definition).

One image per caption (the first ``limit`` captions of ``captions_path``: a COCO
captions JSON or a CSV with a ``caption``/``prompt`` column; seed = the row's seed
column, else its index). ``E`` below are the CLIP joint-space embeddings
(``get_image_features`` / ``get_text_features``, L2-normalised).

Protocols (``preset``):

================  ==============================================================  ===============================
preset            source                                                          differs from the default
================  ==============================================================  ===============================
``eval-unlearn``  the spec system (eval_learn ``clip_score``): mean of             — (default)
                  ``logits_per_image`` = 100·cos for OpenAI CLIP, no clamp,
                  ViT-B/32 (``openai/clip-vit-base-patch32``), 300 captions
``mace``          MACE's evaluation script: mean of ``logit_scale·cos``             the model's own logit scale
                  (``logits_per_image``), no clamp, ViT-B/32, COCO-30k captions     (100 on OpenAI CLIP); 30k
``standard``      torchmetrics CLIPScore: mean of max(100·cos, 0), ViT-L/14         clamp at 0; ViT-L/14
                  (``openai/clip-vit-large-patch14``, torchmetrics' default)
================  ==============================================================  ===============================

Notes. eval_learn's current code loads ViT-L/14 (its models table and earlier versions
name ViT-B/32); erasekit's ``eval-unlearn`` keeps ViT-B/32, the model its table
publishes. torchmetrics' ``CLIPScore.compute`` clamps the *mean* rather than each
image; the two agree whenever no image has a negative cosine (``n_negative_cos`` in
details shows it). In the toy world the model is the mini-CLIP; its learned logit
scale is ~16, so ``mace``'s numbers are on another scale there.
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
from erasekit.metrics.protocols import Protocol
from erasekit.registry import METRICS

PROTOCOLS = {
    p.name: p for p in (
        Protocol("eval-unlearn", "eval_learn clip_score (the spec system): mean 100*cos, no clamp, ViT-B/32, 300 captions",
                 "CLIPScore", {}, n=300),
        Protocol("mace", "MACE evaluation: mean logits_per_image (logit_scale*cos), no clamp, ViT-B/32, COCO-30k",
                 "CLIPScore", {"limit": 30000}, n=30000,
                 differs="the model's logit scale instead of 100; 30,000 captions"),
        Protocol("standard", "torchmetrics CLIPScore: mean of max(100*cos, 0), ViT-L/14",
                 "CLIPScore", {}, differs="clamp at 0; ViT-L/14"),
    )
}
DEFAULT_MODELS = {"eval-unlearn": "openai/clip-vit-base-patch32", "mace": "openai/clip-vit-base-patch32",
                  "standard": "openai/clip-vit-large-patch14"}


def per_image_scores(cos, logit_scale: float, preset: str):
    """The per-image numbers each protocol averages (float64 tensor in, same shape out)."""
    if preset == "mace":
        return cos * logit_scale
    if preset == "standard":
        return (100.0 * cos).clamp(min=0.0)
    return 100.0 * cos


class ClipScoreConfig(MetricConfig):
    limit: int = Field(300, ge=1, description="number of captions (one image each)")
    clip_model: str | None = Field(None, min_length=1, description="default: the protocol's (ViT-B/32; standard: ViT-L/14); mini-CLIP on toy")
    captions_path: str | None = Field(None, description="COCO-style captions (CSV 'prompt'/'caption' column or captions JSON)")


def preset_name(config: ClipScoreConfig) -> str:
    return (config.preset or "eval-unlearn").strip().lower()


@METRICS.register("clip_score", description="Text-image alignment: mean 100*cos(image, caption) on COCO captions.")
class ClipScore(Metric[ClipScoreConfig]):
    """Text-image alignment: mean 100*cos(image, caption) on COCO captions."""

    higher_is_better: ClassVar[bool] = True
    group: ClassVar[str] = "quality"
    protocols: ClassVar[dict[str, Protocol]] = PROTOCOLS
    default_protocol: ClassVar[str] = "eval-unlearn"
    example: ClassVar[dict[str, Any]] = {"limit": 2}

    @classmethod
    def check_config(cls, config: ClipScoreConfig, run, path: str) -> None:  # type: ignore[override]
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
        per_image = per_image_scores(cos, scale, preset)
        records = [
            image_record(img, caption=cap, cos=float(c), clip_score=float(s))
            for img, cap, c, s in zip(images, captions, cos.tolist(), per_image.tolist(), strict=True)
        ]
        details = {
            "preset": preset,
            "definition": {"mace": "mean over images of logit_scale*cos(image, caption), no clamp (MACE)",
                           "standard": "mean over images of max(100*cos(image, caption), 0) (torchmetrics CLIPScore)"}.get(
                preset, "mean over images of 100*cos(image, caption), no clamp (eval_learn)"),
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
