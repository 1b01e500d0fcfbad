"""What the unedited base model contributes to the white-box attacks: itself, and target latents.

UnlearnDiffAtk optimises toward an image the *base* model drew for the target prompt; P4D
compares the erased model's noise prediction with the *base* model's. The runner edits the
pipeline in place, so once the technique is applied the base weights are gone from it:
:class:`UneditedModel` hands out ``ctx.pipe`` while it still is the base model (the ``base``
variant, or a technique that changed nothing) and otherwise loads the base model again from
``model_id`` — lazily, only when an attack really needs it (a cache hit needs nothing).

:func:`target_latent` draws the target image exactly as the generation engine would (same
scheduler, steps, guidance, size and per-image seed rule), encodes it with the VAE (posterior
mean × scaling factor, the image in [-1, 1]) and keeps the latent in the attack cache folder as
safetensors keyed by the base model's fingerprint, prompt, seed and sampler: computed once per
run family, never unpickled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from erasekit.utils.canonical import stable_hash

log = logging.getLogger(__name__)

_LOADED: dict[tuple[str, str, bool], Any] = {}


class UneditedModel:
    """The base model of a metric context (see the module docstring)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.model_id = ctx.run.technique_config.model_id
        self.fingerprint = ctx.base_fingerprint or ctx.model_fingerprint

    @property
    def is_pipe(self) -> bool:
        """Whether the model under test is the base model itself (nothing to load)."""
        c = self.ctx
        return c.variant == "base" or (c.base_fingerprint is not None and c.model_fingerprint == c.base_fingerprint)

    @property
    def pipe(self) -> Any:
        if self.is_pipe:
            return self.ctx.pipe
        device = str(self.ctx.pipe.unet.device)
        key = (self.model_id, device, bool(self.ctx.half_precision))
        if key not in _LOADED:
            from erasekit.models.loading import load_base_pipeline

            log.info("loading the unedited base model %s on %s for an attack that compares with it", self.model_id, device)
            _LOADED.clear()  # one extra model in memory at most
            _LOADED[key] = load_base_pipeline(self.model_id, device=device, use_fp16=bool(self.ctx.half_precision))
        return _LOADED[key]


def sampler_for(ctx: Any, steps: int | None, guidance: float | None) -> tuple[int, float, int, int]:
    """(steps, guidance, height, width) of the target images: the given values, else the run's."""
    from erasekit.models.loading import sampler_defaults

    t = ctx.run.technique_config
    d = sampler_defaults(t.model_id)
    return (int(steps or t.num_inference_steps or d.num_inference_steps),
            float(guidance if guidance is not None else (t.guidance_scale if t.guidance_scale is not None else d.guidance_scale)),
            int(d.height), int(d.width))


def encode_image(pipe: Any, image: torch.Tensor) -> torch.Tensor:
    """VAE posterior mean × scaling factor of ``image`` [1, 3, H, W] in [0, 1]."""
    vae = pipe.vae
    x = (image * 2 - 1).to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        lat = vae.encode(x).latent_dist.mean
    return (lat * vae.config.scaling_factor).float()


def target_latent(unedited: UneditedModel, cache_dir: str | Path, prompt: str, seed: int, steps: int, guidance: float,
                  height: int, width: int, run_seed: int) -> torch.Tensor:
    """The latent [1, C, h, w] of the base model's image for ``prompt`` (image seed rule of the engine)."""
    from safetensors.torch import load_file, save_file

    from erasekit.generation.engine import image_seed
    from erasekit.utils.atomic_io import atomic_write

    key = stable_hash({"format": "erasekit.attack-target/1", "model": unedited.fingerprint, "prompt": prompt,
                       "seed": int(seed), "run_seed": int(run_seed), "steps": steps, "guidance": guidance,
                       "size": [height, width]})
    path = Path(cache_dir) / "attacks" / "targets" / key[:2] / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["latent"]
        except Exception:  # noqa: BLE001 - a corrupt entry is recomputed
            log.warning("attack target %s is unreadable; drawing it again", path)
    pipe = unedited.pipe
    gen = torch.Generator("cpu").manual_seed(image_seed(run_seed, seed))
    with torch.no_grad():
        out = pipe(prompt=[prompt], num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                   generator=[gen], output_type="pt")
    latent = encode_image(pipe, out.images[:1].float()).cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({"latent": latent}, str(tmp)))
    return latent
