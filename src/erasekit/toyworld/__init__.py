"""The toy world: tiny trained models shipped with erasekit (see README.md here).

A procedural 32x32 world of coloured shapes, an SD-shaped diffusers pipeline
trained on it, a judge CNN and a mini-CLIP. Loading is offline only.
"""

from __future__ import annotations

from pathlib import Path

from .render import COLOURS, SHAPES, SYNONYMS, all_captions, captions_for, render, render_batch

#: ``technique.config.model_id`` that selects the toy world
TOY_MODEL_ID = "toy"

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PIPELINE_DIR = WEIGHTS_DIR / "pipeline"
CLIP_DIR = WEIGHTS_DIR / "clip"
JUDGE_DIR = WEIGHTS_DIR / "judge"

# Default sampler settings of the toy model (DDIM, SD v1.4 scheduler config).
TOY_DEFAULTS = {
    "num_inference_steps": 20,
    "guidance_scale": 4.0,
    "height": 32,
    "width": 32,
}

__all__ = [
    "SHAPES",
    "COLOURS",
    "SYNONYMS",
    "TOY_DEFAULTS",
    "TOY_MODEL_ID",
    "WEIGHTS_DIR",
    "PIPELINE_DIR",
    "CLIP_DIR",
    "JUDGE_DIR",
    "all_captions",
    "captions_for",
    "colour_captions",
    "full_captions",
    "load_clip",
    "load_judge",
    "load_pipeline",
    "neutral_captions",
    "render",
    "render_batch",
    "shape_captions",
]


def full_captions(synonyms: bool = False) -> list[str]:
    """The 16 "a {colour} {shape}" prompts (plus "a {colour} disc" with synonyms=True)."""
    names = [*SHAPES, *(w for v in SYNONYMS.values() for w in v)] if synonyms else list(SHAPES)
    return [f"a {c} {s}" for s in names for c in COLOURS]


def shape_captions(synonyms: bool = False) -> list[str]:
    names = [*SHAPES, *(w for v in SYNONYMS.values() for w in v)] if synonyms else list(SHAPES)
    return [f"a {s}" for s in names]


def colour_captions() -> list[str]:
    return [f"a {c} shape" for c in COLOURS]


def neutral_captions() -> list[str]:
    """Captions that name no shape: "a shape", "a {colour} shape" and ""."""
    return ["a shape", *colour_captions(), ""]


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"toy {what} not found at {path}; regenerate with `python -m erasekit.toyworld.train --out {WEIGHTS_DIR}`"
        )


def load_pipeline(device="cpu", dtype=None, path: str | Path | None = None):
    """The shipped StableDiffusionPipeline, loaded exactly as a run loads ``model_id: toy``
    (:func:`erasekit.models.loading.load_pipeline_folder`: offline, DDIM, no safety checker)."""
    import torch

    from erasekit.models.loading import load_pipeline_folder

    p = Path(path) if path is not None else PIPELINE_DIR
    _require(p / "model_index.json", "pipeline")
    return load_pipeline_folder(p, device=device, dtype=dtype or torch.float32)


def load_clip(device="cpu", path: str | Path | None = None):
    """The mini-CLIP: (transformers CLIPModel, CLIPProcessor), offline, eval mode."""
    from transformers import CLIPModel, CLIPProcessor

    p = Path(path) if path is not None else CLIP_DIR
    _require(p / "config.json", "mini-CLIP")
    model = CLIPModel.from_pretrained(str(p), local_files_only=True).to(device).eval()
    proc = CLIPProcessor.from_pretrained(str(p), local_files_only=True)
    return model, proc


def load_judge(device="cpu", path: str | Path | None = None):
    from .judge import load_judge as _lj

    return _lj(device=device, path=path)
