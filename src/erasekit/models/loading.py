"""Load base text-to-image pipelines from a local folder, the HF cache, or the toy world.

Why one module: every technique, the generation engine and every metric must see
the *same* model identity. ``base_fingerprint`` is the identity of the unedited
weights (file hashes for a local folder, the resolved snapshot revision for a hub
id, the shipped file hashes for ``toy``); techniques extend it with their config.
Nothing here ever downloads: a missing model is a clear error saying how to get it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from erasekit.errors import ConfigError, ModelNotFoundError
from erasekit.toyworld import TOY_MODEL_ID
from erasekit.utils.hashing import folder_digest

log = logging.getLogger(__name__)

SD_DEFAULTS: dict[str, Any] = {"num_inference_steps": 50, "guidance_scale": 7.5, "height": 512, "width": 512}


@dataclass(frozen=True)
class SamplerDefaults:
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int


def sampler_defaults(model_id: str) -> SamplerDefaults:
    """The model's own default sampler settings, read from configs only (no weights)."""
    if model_id == TOY_MODEL_ID:
        from erasekit.toyworld import TOY_DEFAULTS

        return SamplerDefaults(**{k: TOY_DEFAULTS[k] for k in ("num_inference_steps", "guidance_scale", "height", "width")})
    d = dict(SD_DEFAULTS)
    folder = Path(model_id)
    if is_folder(folder):
        size = _native_size(folder)
        if size:
            d["height"] = d["width"] = size
    return SamplerDefaults(**d)


def _native_size(folder: Path) -> int | None:
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        return int(unet["sample_size"]) * factor
    except (OSError, KeyError, ValueError):
        return None


def looks_like_local_path(model: str) -> bool:
    """Whether a model name is meant as a folder (``./x``, ``/x``, ``~/x``, ``a/b/c``, a backslash)
    rather than an HF id (``org/name``): a missing folder is then an error, never a hub lookup."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


def is_folder(path: Path) -> bool:
    """``path.is_dir()`` that is False (not an exception) for names the OS cannot even look up
    (too long, NUL byte): a model id from a config is untrusted text."""
    try:
        return path.expanduser().is_dir()
    except (OSError, ValueError):
        return False


def resolve_device(device: str) -> str:
    """Map 'auto' to the best available device; refuse CUDA where there is none."""
    import torch

    d = device.lower()
    if d == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"'{device}' requested but CUDA is not available on this machine", "set device: cpu (or auto)")
    if d == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("device", "'mps' requested but not available", "set device: cpu (or auto)")
    return d


def toy_pipeline_dir() -> Path:
    from erasekit.toyworld import PIPELINE_DIR

    return Path(PIPELINE_DIR)


def local_model_dir(model_id: str) -> Path:
    """Resolve a model id to a local diffusers folder without touching the network."""
    if model_id == TOY_MODEL_ID:
        return toy_pipeline_dir()
    p = Path(model_id).expanduser()
    if is_folder(p):
        if not (p / "model_index.json").is_file():
            raise ModelNotFoundError(f"{model_id}: not a diffusers pipeline folder (no model_index.json)")
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises several unrelated types here
        raise ModelNotFoundError(
            f"model '{model_id}' is not available offline ({exc.__class__.__name__}). "
            f"Download it once with `huggingface-cli download {model_id}` on a machine with network access "
            "(or copy a diffusers folder here) and set technique.config.model_id to that folder; "
            "use model_id: toy for the embedded toy world"
        ) from None


@lru_cache(maxsize=16)
def model_family(model_id: str) -> Any:
    """:class:`~erasekit.models.families.FamilyInfo` of ``model_id``, from its configs (no weights read)."""
    from erasekit.models.families import detect_family

    return detect_family(local_model_dir(model_id))


@lru_cache(maxsize=16)
def base_fingerprint(model_id: str) -> str:
    """Identity of the unedited base weights (16 hex chars)."""
    folder = local_model_dir(model_id)
    if model_id != TOY_MODEL_ID and not is_folder(Path(model_id)):
        ident = f"hub:{model_id}@{folder.name}"  # snapshot folder name is the commit hash
    else:
        ident = f"files:{folder_digest(folder)}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def load_base_pipeline(model_id: str, device: str = "cpu", use_fp16: bool = False) -> Any:
    """Load the base text-to-image pipeline of ``model_id`` (SD 1.x, 2.x or SDXL) with DDIM, offline.

    fp16 only on CUDA; elsewhere it is ignored with a log line.
    """
    import torch

    folder = local_model_dir(model_id)
    dtype = torch.float32
    if use_fp16:
        if device.startswith("cuda"):
            dtype = torch.float16
        else:
            log.info("use_fp16 ignored on %s: half precision only runs on CUDA", device)
    return load_pipeline_folder(folder, device=device, dtype=dtype)


def load_pipeline_folder(folder: Path, device: str = "cpu", dtype: Any = None) -> Any:
    """A local diffusers folder as the pipeline class its ``model_index.json`` names
    (:func:`erasekit.models.families.detect_family`): DDIM built from the folder's own scheduler
    config (its betas, prediction type and timestep spacing; steps_offset 1, no sample clipping),
    no safety checker or watermarker, no progress bars, on ``device`` in ``dtype`` (default float32)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from erasekit.models.families import SDXL, detect_family

    dtype = dtype or torch.float32
    _quiet_hf_progress()
    if detect_family(folder).family == SDXL:
        pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), dtype=dtype, add_watermarker=False, local_files_only=True)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder),
            dtype=dtype,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            local_files_only=True,
        )
    sched_cfg = dict(pipe.scheduler.config)
    sched_cfg["steps_offset"] = 1
    sched_cfg["clip_sample"] = False
    pipe.scheduler = DDIMScheduler.from_config(sched_cfg)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if str(device).startswith("cuda"):
        # channels-last convolutions are the fast layout on CUDA (attention already runs through
        # PyTorch's scaled-dot-product kernels, diffusers' default); the layout joins the image key
        pipe.unet.to(memory_format=torch.channels_last)
    return pipe


def _quiet_hf_progress() -> None:
    """diffusers/transformers print per-component loading bars; our own progress is enough."""
    try:
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
