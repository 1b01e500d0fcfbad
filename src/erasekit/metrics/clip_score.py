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

On ``model_id: toy`` the default model is the mini-CLIP (its learned logit scale is
~14, so the ``mace`` preset's numbers are on another scale there than ``standard``'s).
"""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import (
    config_path,
    default_clip_model,
    get_detector,
    images_of,
    prompt_requests,
    require_file,
    require_images,
)
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.registry import METRICS

CLIP_SCORE_PRESETS = ("standard", "mace")
DEFAULT_MODELS = {"standard": "openai/clip-vit-large-patch14", "mace": "openai/clip-vit-base-patch32"}


class ClipScoreConfig(MetricConfig):
    limit: int = Field(300, ge=1, description="number of captions (one image each)")
    clip_model: str | None = Field(None, min_length=1, description="default: ViT-L/14 (standard) or ViT-B/32 (preset mace); mini-CLIP on toy")
    captions_path: str | None = Field(None, description="COCO-style captions (CSV 'prompt'/'caption' column or captions JSON)")


def preset_name(config: ClipScoreConfig) -> str:
    return (config.preset or "standard").strip().lower()


@METRICS.register("clip_score", description="Text-image alignment: mean max(100*cos, 0) on COCO captions.")
class ClipScore(Metric):
    """Text-image alignment: mean max(100*cos, 0) on COCO captions."""

    Config = ClipScoreConfig

    @classmethod
    def check_config(cls, config: ClipScoreConfig, run, path: str) -> None:  # type: ignore[override]
        if config.preset is not None and preset_name(config) not in CLIP_SCORE_PRESETS:
            raise ConfigError(f"{path}.preset", f"unknown preset {config.preset!r}", f"use one of {', '.join(CLIP_SCORE_PRESETS)}")
        require_file(config.captions_path, f"{path}.captions_path", "captions file")
        if config.clip_model:
            from erasekit.metrics.asr_i2p import check_clip_model

            check_clip_model(config.clip_model, f"{path}.clip_model")

    def _setup(self) -> None:
        if getattr(self, "_items", None) is not None:
            return
        from erasekit.datasets import load_coco_captions

        cfg: ClipScoreConfig = self.config  # type: ignore[assignment]
        self._path = config_path(self.ctx, cfg)
        self._items = load_coco_captions(cfg.captions_path, cfg.limit, toy=self.ctx.is_toy, field=f"{self._path}.captions_path")
        if not self._items:
            raise ConfigError(f"{self._path}.captions_path", "no captions", "give a captions file with at least one caption")
        if cfg.captions_path:
            self._source = cfg.captions_path
        else:
            self._source = "toy COCO-like captions (erasekit.datasets.toy)"

    def requests(self):
        self._setup()
        return prompt_requests(self._items, 1, row_guidance=False)

    def compute(self, images):
        import torch

        self._setup()
        cfg: ClipScoreConfig = self.config  # type: ignore[assignment]
        require_images(images, len(self._items), "clip_score")
        preset = preset_name(cfg)
        model = default_clip_model(self.ctx, cfg.clip_model, DEFAULT_MODELS[preset])
        clip = get_detector(self.ctx, cfg, "clip", field=f"{self._path}.clip_model", clip_model=model)
        captions = [it.prompt for it in self._items]
        with torch.no_grad():
            ie = clip.image_embeddings(images_of(images))
            te = clip.text_embeddings(captions)
        cos = (ie * te).sum(-1).double()
        scale = float(clip.logit_scale)
        per_image = (cos * scale) if preset == "mace" else (100.0 * cos).clamp(min=0.0)
        value = float(per_image.mean())
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
            "captions": {"source": self._source, "limit": cfg.limit, "n": len(captions)},
            "n_images": len(images),
            "mean_cos": float(cos.mean()),
            "mean_100cos_unclamped": float((100.0 * cos).mean()),
            "n_negative_cos": int((cos < 0).sum()),
            "std": float(per_image.std()) if len(images) > 1 else 0.0,
        }
        return MetricResult(value=value, details=details, records=records)
