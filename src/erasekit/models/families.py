"""Model families: which diffusers pipeline a folder holds, and what that changes.

Why one module: the family decides the pipeline class, the text a cross-attention layer
reads, the prediction type and the native resolution, and it must be known *before any
weight loads* (config validation exits 2 on an unsupported family). Everything here reads
JSON configs only: ``model_index.json`` (the pipeline class), ``unet/config.json`` (context
width, sample size), ``scheduler/scheduler_config.json`` (prediction type) and
``vae/config.json`` (the latent scale factor).

Families erasekit runs:

=========  ==============================  ====================  ===============  ===========
family     pipeline class                  text context          prediction       native px
=========  ==============================  ====================  ===============  ===========
``sd1``    StableDiffusionPipeline          CLIP ViT-L, 768-d     epsilon          512
``sd2``    StableDiffusionPipeline          OpenCLIP-H, 1024-d    v (2.x-768) / ε  768 / 512
``sdxl``   StableDiffusionXLPipeline        ViT-L ⊕ bigG, 2048-d  epsilon          1024
=========  ==============================  ====================  ===============  ===========

``sd1`` and ``sd2`` share a pipeline class; they are told apart by the text encoder, which is
what changes the context: OpenCLIP's (``hidden_act: gelu``; 1024-d in the real SD 2.x) versus
OpenAI CLIP's (``quick_gelu``; 768-d). The toy world
is ``sd1``-shaped. Families erasekit recognises but does not run (SD3, FLUX, …) are a clear
error naming the techniques whose method could apply there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erasekit.errors import ConfigError

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILIES = (SD1, SD2, SDXL)
FAMILY_NAMES = {SD1: "Stable Diffusion 1.x", SD2: "Stable Diffusion 2.x", SDXL: "Stable Diffusion XL"}

#: pipeline classes whose families are known but not supported yet → what could apply there and why the rest cannot
UNSUPPORTED: dict[str, tuple[str, str]] = {
    "StableDiffusion3Pipeline": ("SD3", "esd, sld, negative_prompt could apply; mace/uce/rece/speed need cross-attention K/V, "
                                 "which SD3's joint attention lacks"),
    "FluxPipeline": ("FLUX", "esd, negative_prompt could apply; mace/uce/rece/speed need cross-attention K/V, "
                     "which FLUX's joint attention lacks"),
    "StableDiffusionXLImg2ImgPipeline": ("SDXL refiner", "erasekit erases from and generates with the SDXL base model"),
    "PixArtAlphaPipeline": ("PixArt-α", "every technique could apply (T5 cross-attention)"),
}


@dataclass(frozen=True)
class FamilyInfo:
    """What a pipeline folder's configs say about it (no weights read)."""

    family: str
    pipeline_class: str
    context_dim: int
    prediction_type: str
    native_size: int

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "pipeline_class": self.pipeline_class, "context_dim": self.context_dim,
                "prediction_type": self.prediction_type, "native_size": self.native_size}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_family(folder: str | Path, field: str = "technique.config.model_id") -> FamilyInfo:
    """The family of a diffusers folder, from its configs; ConfigError for one erasekit does not run."""
    folder = Path(folder)
    index = _read(folder / "model_index.json")
    cls = str(index.get("_class_name", ""))
    if cls in UNSUPPORTED:
        name, could = UNSUPPORTED[cls]
        raise ConfigError(field, f"{cls} ({name}) is not supported yet ({could})", "use a Stable Diffusion 1.x, 2.x or SDXL model")
    unet = _read(folder / "unet" / "config.json")
    if cls not in ("StableDiffusionPipeline", "StableDiffusionXLPipeline") or not unet:
        raise ConfigError(field, f"{folder.name}: pipeline class {cls or 'missing'!r} is not a text-to-image family erasekit runs",
                          "use a StableDiffusionPipeline (SD 1.x / 2.x) or StableDiffusionXLPipeline folder")
    ctx = int(unet.get("cross_attention_dim") or 768)
    if cls == "StableDiffusionXLPipeline":
        family = SDXL
    else:
        act = _read(folder / "text_encoder" / "config.json").get("hidden_act")
        family = SD2 if ctx == 1024 or act == "gelu" else SD1
    sched = _read(folder / "scheduler" / "scheduler_config.json")
    vae = _read(folder / "vae" / "config.json")
    factor = 2 ** (len(vae.get("block_out_channels") or [0, 0, 0, 0]) - 1)
    return FamilyInfo(family=family, pipeline_class=cls, context_dim=ctx,
                      prediction_type=str(sched.get("prediction_type") or "epsilon"),
                      native_size=int(unet.get("sample_size") or 64) * factor)


def family_of(pipe: Any) -> str:
    """The family of a loaded pipeline (or any object with ``unet``/``text_encoder`` attributes)."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return SDXL
    ctx = getattr(getattr(getattr(pipe, "unet", None), "config", None), "cross_attention_dim", None)
    act = getattr(getattr(getattr(pipe, "text_encoder", None), "config", None), "hidden_act", None)
    return SD2 if ctx == 1024 or act == "gelu" else SD1


def require_family(family: str, supported: tuple[str, ...], what: str, field: str) -> None:
    """ConfigError (exit 2) when ``what`` does not run on ``family``."""
    if family not in supported:
        names = ", ".join(FAMILY_NAMES[f] for f in supported)
        raise ConfigError(field, f"{what} does not support {FAMILY_NAMES.get(family, family)} yet (supported: {names})",
                          "use a supported model family, or another technique/attack (README: model families)")


__all__ = ["FAMILIES", "FAMILY_NAMES", "SD1", "SD2", "SDXL", "UNSUPPORTED", "FamilyInfo", "detect_family", "family_of",
           "require_family"]
