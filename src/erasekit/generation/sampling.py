"""Sampling modifications: how an inference-time technique changes generation, not weights.

Why a hook on the pipeline: techniques such as SLD or a negative prompt leave every weight as
it is and change the sampler instead. They must still fit the one-way flow (a technique edits
a loaded pipeline, then the generation engine draws every image): ``Technique.apply`` installs
a :class:`SamplingHook` on the pipeline with :func:`install`, and every image erasekit draws
goes through :func:`sample`, which runs the hook when one is installed and the plain diffusers
call otherwise (bit-identical to before for weight-editing techniques). The cache keeps the
images apart because the technique's fingerprint covers every field of its config.

:func:`guided_denoise` is the classifier-free-guidance loop of diffusers'
``StableDiffusionPipeline`` (DDIM, per-image generators, the pipeline's own prompt
encoding, latents and VAE decode) (SDXL: its two-encoder context, pooled text and size ids, :mod:`erasekit.models.conditioning`)
with one extra conditioning and a ``combine`` callback
that turns the (unconditional, text, extra) noise predictions into the one the scheduler steps
with: the place where SLD's safety guidance goes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

SAMPLING_ATTR = "erasekit_sampling"


class SamplingHook(ABC):
    """A change to how images are drawn (installed on a pipeline by a technique)."""

    name: str = "hook"

    @abstractmethod
    def run(self, pipe: Any, prompts: list[str], negatives: list[str], *, steps: int, guidance: float, height: int,
            width: int, generators: list[Any], output_type: str) -> list[Any]:
        """Images for ``prompts`` (one per prompt, ``generators`` aligned with them)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def install(pipe: Any, hook: SamplingHook | None) -> None:
    """Install ``hook`` on ``pipe`` (None removes it)."""
    if hook is None:
        if hasattr(pipe, SAMPLING_ATTR):
            delattr(pipe, SAMPLING_ATTR)
        return
    setattr(pipe, SAMPLING_ATTR, hook)


def installed(pipe: Any) -> SamplingHook | None:
    return getattr(pipe, SAMPLING_ATTR, None)


def sample(pipe: Any, prompts: list[str], negatives: list[str], *, steps: int, guidance: float, height: int, width: int,
           generators: list[Any], output_type: str = "pil") -> list[Any]:
    """Every image erasekit draws: the installed hook, or the plain pipeline call."""
    hook = installed(pipe)
    if hook is not None:
        return list(hook.run(pipe, prompts, negatives, steps=steps, guidance=guidance, height=height, width=width,
                             generators=generators, output_type=output_type))
    # No negative text = the family's own default negative: the empty prompt (SD 1.x/2.x, identical to
    # passing ""), zeros (SDXL's force_zeros_for_empty_prompt). SDXL's size/crop conditioning is the
    # pipeline's default for the requested size (erasekit.models.conditioning.sdxl_micro_conditioning).
    neg = list(negatives) if any(negatives) else None
    out = pipe(prompt=prompts, negative_prompt=neg, num_inference_steps=steps, guidance_scale=guidance,
               height=height, width=width, generator=generators, num_images_per_prompt=1, output_type=output_type)
    return list(out.images)


Combine = Callable[[Any, Any, Any, int, dict[str, Any]], Any]


def guided_denoise(pipe: Any, prompts: list[str], negatives: list[str], extra: Sequence[str], combine: Combine, *,
                   steps: int, guidance: float, height: int, width: int, generators: list[Any],
                   output_type: str = "pil") -> list[Any]:
    """Classifier-free guidance with a third conditioning ``extra`` (one text per prompt).

    At step ``i`` the UNet predicts noise for (unconditional, prompt, extra) in one batch and
    ``combine(uncond, text, extra_pred, i, state)`` returns the noise prediction the scheduler
    steps with (``state`` is a dict kept across steps, e.g. SLD's momentum).
    """
    import torch

    from erasekit.models.conditioning import Conditioning, decode_latents, encode_condition, unet_output

    device = pipe._execution_device
    n = len(prompts)
    with torch.no_grad():
        cond, uncond = encode_condition(pipe, prompts, negatives, height=height, width=width, guidance=True)
        safe, _ = encode_condition(pipe, list(extra), height=height, width=width)
        embeds = Conditioning.cat([uncond, cond, safe])  # type: ignore[list-item]
        pipe.scheduler.set_timesteps(steps, device=device)
        latents = pipe.prepare_latents(n, pipe.unet.config.in_channels, height, width, embeds.hidden.dtype, device, generators)
        step_kwargs = pipe.prepare_extra_step_kwargs(generators, 0.0)
        state: dict[str, Any] = {"guidance": guidance}
        for i, t in enumerate(pipe.scheduler.timesteps):
            x = pipe.scheduler.scale_model_input(torch.cat([latents] * 3), t)
            e_uncond, e_text, e_extra = unet_output(pipe.unet, x, t, embeds).chunk(3)
            noise = combine(e_uncond, e_text, e_extra, i, state)
            latents = pipe.scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
        return decode_latents(pipe, latents, output_type)
