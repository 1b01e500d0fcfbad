"""Which detector judges a concept: one rule, used by every metric.

``detector: auto`` resolves, in order, to

1. the world's closed-set classifier (the toy judge CNN on the toy world; real models have
   none) when the metric prefers one (``prefer_classifier``) and no ``clip_model`` was asked
   for — metrics that score *retention* or one decision per prompt prefer it because
   zero-shot CLIP confuses the toy world's shapes often enough to misreport them
   (``toyworld/README.md``); it must know the concept, so a toy run cannot evaluate nudity;
2. ``nudenet`` when the concept is a nudity word (:data:`erasekit.concepts.NUDITY_WORDS`);
3. ``clip`` zero-shot otherwise (the world's CLIP: ViT-L/14, or the toy mini-CLIP).

:func:`check_judge` runs the same rule at validation time, so a config whose judge cannot
decide its concept fails before any model loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erasekit.concepts import is_nudity
from erasekit.detectors.presets import DEFAULT_CLIP_MODEL
from erasekit.errors import ConfigError
from erasekit.models.loading import looks_like_local_path


def judge_name(world: Any, concept: str, detector: str = "auto", *, prefer_classifier: bool = False,
               clip_model: str | None = None) -> str:
    """The registered detector name that decides ``concept`` (rule in the module docstring)."""
    if detector != "auto":
        return detector
    if prefer_classifier and world.classifier and clip_model is None:
        return world.classifier
    if is_nudity(concept):
        return "nudenet"
    return "clip"


def check_clip_model(clip_model: str, where: str) -> None:
    """A local-looking clip_model must be an existing folder (HF ids are resolved at run time)."""
    if clip_model == "toy":
        return
    if looks_like_local_path(clip_model) and not Path(clip_model).expanduser().is_dir():
        raise ConfigError(where, f"CLIP folder not found: {clip_model}", "give a CLIP folder (save_pretrained) or an HF id in the local cache")


def check_judge(config: Any, concept: str, world: Any, path: str, concept_field: str, *,
                prefer_classifier: bool = False) -> str:
    """Validation of a metric's judge fields for ``concept``; returns the resolved detector name."""
    detector = getattr(config, "detector", "auto")
    clip_model = getattr(config, "clip_model", None)
    name = judge_name(world, concept, detector, prefer_classifier=prefer_classifier, clip_model=clip_model)
    if name == "nudenet" and not is_nudity(concept):
        raise ConfigError(f"{path}.detector", f"NudeNet detects nudity only, not {concept!r}", "use detector: clip (or auto)")
    if name == world.classifier or (name == "clip" and clip_model is None):
        world.check_concept(concept, concept_field)  # the world's own judges must know the concept
    if name == "clip" and clip_model:
        check_clip_model(clip_model, f"{path}.clip_model")
    return name


def detector_pool(ctx: Any) -> Any:
    """The run's shared DetectorPool (a private one when the context has none, e.g. in unit tests)."""
    pool = getattr(ctx, "detectors", None)
    if pool is None:
        from erasekit.detectors.pool import DetectorPool

        pool = DetectorPool("cpu")
        ctx.detectors = pool
    return pool


def device_param(config: Any) -> dict[str, Any]:
    """``device`` for a pool call: the metric's own unless it is "auto" (then the run's)."""
    device = getattr(config, "device", "auto")
    return {"device": device} if device and device != "auto" else {}


def build_judge(ctx: Any, config: Any, name: str, path: str, *, default_clip: str = DEFAULT_CLIP_MODEL,
                contrast: Sequence[str] | None = None, neutral: Sequence[str] | None = None) -> Any:
    """The shared detector ``name`` with the metric's protocol fields (preset, threshold, CLIP model)."""
    pool = detector_pool(ctx)
    extra = device_param(config)
    threshold = getattr(config, "threshold", None)
    if name == "nudenet":
        return pool.get("nudenet", preset=getattr(config, "nudenet_preset", None), threshold=threshold, **extra)
    if name == "clip":
        params: dict[str, Any] = {"clip_model": ctx.world.clip_model(getattr(config, "clip_model", None), default_clip)}
        if contrast is not None:
            params["contrast_captions"] = tuple(contrast)
        if neutral is not None:
            params["neutral_captions"] = tuple(neutral)
        return pool.get("clip", threshold=threshold, field=f"{path}.clip_model", **params, **extra)
    return pool.get(name, threshold=threshold, **extra)


def select_judge(ctx: Any, config: Any, concept: str, path: str, *, prefer_classifier: bool = False,
                 contrast: Sequence[str] | None = None) -> Any:
    """The detector that decides ``concept`` for this metric (:func:`judge_name` + :func:`build_judge`)."""
    name = judge_name(ctx.world, concept, getattr(config, "detector", "auto"), prefer_classifier=prefer_classifier,
                      clip_model=getattr(config, "clip_model", None))
    return build_judge(ctx, config, name, path, contrast=contrast)
