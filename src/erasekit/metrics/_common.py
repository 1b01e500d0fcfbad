"""Config checks shared by several metrics (kept here so each rule exists once)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasekit.errors import ConfigError, ErasekitError
from erasekit.generation.request import ImageRequest

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun

NUDITY_WORDS = ("nudity", "nude", "naked", "nsfw", "sexual")


def concept_for(run: ResolvedRun, override: str | None) -> str | None:
    """The concept a metric evaluates: its own field if set, else the technique's primary concept."""
    if override:
        return override
    concepts = run.concepts()
    return concepts[0] if concepts else None


def is_nudity(concept: str | None) -> bool:
    return concept is not None and concept.strip().lower() in NUDITY_WORDS


def is_toy_concept(concept: str | None) -> bool:
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    names = set(SHAPES) | set(COLOURS) | {s for syns in SYNONYMS.values() for s in syns}
    return concept is not None and concept.strip().lower() in names


def require_file(path: str | None, where: str, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(where, f"{what} not found: {path}", "check the path (relative paths are relative to the working directory)")
    return p


def require_prompt_csv(path: str | None, where: str) -> Path:
    """A CSV that exists, decodes as UTF-8 and has a ``prompt`` column."""
    if not path:
        raise ConfigError(where, "required", "give the path of a CSV file with a 'prompt' column")
    p = require_file(path, where, "prompt CSV")
    assert p is not None
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise ConfigError(where, f"{path} is not UTF-8 text", "save the CSV as UTF-8") from None
    except (OSError, csv.Error) as exc:
        raise ConfigError(where, f"cannot read {path} ({exc})", "give a readable CSV file") from None
    if not header or "prompt" not in [h.strip().lower() for h in header]:
        raise ConfigError(where, f"{path} has no 'prompt' column", "add a header row with a 'prompt' column")
    return p


# ---------------------------------------------------------------- metrics I helpers
# (asr_i2p, asr_custom, clip_score, fid, ua_ira): prompt rows → requests, shared
# detectors, per-image records. Kept here so every metric seeds, judges and records
# images the same way.

# Image j (> 0) of a prompt whose seed is s uses seed s + j * IMAGE_SEED_STRIDE: image 0
# keeps the row's own seed (an I2P row's sd_seed reproduces the published image), and
# the extra images of one prompt never collide with the seeds of neighbouring rows.
IMAGE_SEED_STRIDE = 1_000_000


def config_path(ctx: Any, config: Any) -> str:
    """The dotted config path of this metric's ``config`` block (``metrics[2].config``), for errors."""
    for m in getattr(getattr(ctx, "run", None), "metrics", None) or []:
        if m.config is config:
            return f"{m.path}.config"
    return "metric.config"


def default_clip_model(ctx: Any, clip_model: str | None, default: str) -> str:
    """``clip_model`` as the run should use it: the toy mini-CLIP when the run's model is the toy
    world and the user left the default (a real CLIP has never seen 32×32 toy shapes)."""
    if clip_model is None or (getattr(ctx, "is_toy", False) and clip_model == default):
        from erasekit.detectors.clip import TOY_CLIP_ID

        return TOY_CLIP_ID if getattr(ctx, "is_toy", False) else default
    return clip_model


def get_detector(ctx: Any, config: Any, name: str, field: str | None = None, **params: Any) -> Any:
    """A shared detector from the run's pool (``ctx.detectors``); a metric used outside the runner
    gets a pool of its own. ``config.device`` "auto" means the pool's device (the run's)."""
    pool = detector_pool(ctx)
    device = getattr(config, "device", "auto")
    if device and device != "auto":
        params["device"] = device
    if field is not None:
        params["field"] = field
    return pool.get(name, **params)


def prompt_requests(items: Sequence[Any], images_per_prompt: int = 1, row_guidance: bool = True) -> list[ImageRequest]:
    """Requests for prompt rows, in row order, ``images_per_prompt`` consecutive images per row.

    Seed of image j of row i: ``row.seed`` (or i when the row has none) + j * IMAGE_SEED_STRIDE.
    ``row_guidance``: honour a row's own guidance scale (I2P's sd_guidance_scale, ESD-style
    evaluation_guidance); otherwise the technique's guidance applies.
    """
    out: list[ImageRequest] = []
    for i, it in enumerate(items):
        base = int(it.seed) if getattr(it, "seed", None) is not None else i
        g = getattr(it, "guidance_scale", None) if row_guidance else None
        for j in range(int(images_per_prompt)):
            out.append(ImageRequest(prompt=it.prompt, seed=(base + j * IMAGE_SEED_STRIDE) & (2**63 - 1), guidance_scale=g))
    return out


def require_images(images: Sequence[Any], expected: int, metric: str) -> None:
    """compute() must get exactly the images requests() asked for (else results are misaligned)."""
    if len(images) != expected:
        raise ErasekitError(f"{metric}: got {len(images)} images for {expected} requests (images must align with requests)")


def detection_fields(det: Any) -> dict[str, Any]:
    """A detector verdict as record fields: flagged, score, label, every raw score (+ NudeNet parts)."""
    rec = det.as_record() if hasattr(det, "as_record") else {"flagged": det.flagged, "score": det.score}
    rec["flagged"] = bool(rec["flagged"])
    rec["score"] = float(rec["score"])
    return rec


def images_of(images: Sequence[Any]) -> list[Any]:
    """The PIL images of ``GeneratedImage`` objects (anything else is passed through)."""
    return [im.image if hasattr(im, "image") and hasattr(im, "request") else im for im in images]


def rate(flags: Sequence[bool]) -> float:
    if not flags:
        raise ErasekitError("no images to score (an empty set has no rate; it is never a perfect score)")
    return float(sum(bool(f) for f in flags)) / len(flags)


# ---------------------------------------------------------------- detectors (shared by the metrics)


def detector_pool(ctx: Any) -> Any:
    """The run's shared DetectorPool (a private one when the context has none, e.g. in unit tests)."""
    pool = getattr(ctx, "detectors", None)
    if pool is None:
        from erasekit.detectors import DetectorPool

        pool = DetectorPool("cpu")
        ctx.detectors = pool
    return pool


def concept_detector(ctx: Any, concept: str, *, device: str = "auto", preset: str | None = None,
                     threshold: float | None = None, field: str | None = None) -> Any:
    """The detector that decides whether ``concept`` is in an image, one rule for every metric:
    the toy judge in the toy world, NudeNet (``preset``: mace / unlearndiff / eval-unlearn) for
    nudity, CLIP zero-shot otherwise. ``threshold`` overrides the detector's own; ``device``
    "auto" means the pool's device (the run's)."""
    pool = detector_pool(ctx)
    extra: dict[str, Any] = {"device": device} if device and device != "auto" else {}
    if getattr(ctx, "is_toy", False):
        return pool.get("toy_judge", threshold=threshold, **extra)
    if is_nudity(concept):
        return pool.get("nudenet", preset=preset, threshold=threshold, **extra)
    return pool.get("clip", threshold=threshold, field=field, **extra)

