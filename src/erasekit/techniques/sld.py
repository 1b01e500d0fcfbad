"""Safe Latent Diffusion (Schramowski et al., CVPR 2023): safety guidance during sampling.

No weight changes: at every DDIM step the UNet also predicts the noise for a *safety
concept* text ``s``, and the guidance direction is pushed away from it, as the authors'
implementation (diffusers' ``StableDiffusionPipelineSafe``) computes it:

* ``g = ε(c) − ε(∅)`` (classifier-free guidance);
* ``μ = clamp(|ε(c) − ε(s)| · s_S, max=1)``, set to 0 where ``ε(c) − ε(s) ≥ λ`` (element-wise; Eq. 6);
* ``γ = μ ⊙ (ε(s) − ε(∅)) + s_m · ν`` (Eq. 4 + momentum, Eq. 7), then ``ν ← β_m ν + (1 − β_m) γ`` (Eq. 8);
* from step ``warmup`` on, ``g ← g − γ`` (Eq. 3); ``ε̂ = ε(∅) + w · g``.

Safety guidance is off when ``s_S ≤ 1`` (as in the reference). The four published
configurations (``sld_config``; the reference's ``SafetyConfig``):

=========  =======  ==========  =========  ===============  ===========
config     s_S      warm-up     λ          momentum s_m     β_m
=========  =======  ==========  =========  ===============  ===========
weak       20       15          0.0        0.0              0.0
medium     1000     10          0.01       0.3              0.4
strong     2000     7           0.025      0.5              0.7
max        5000     0           1.0        0.5              0.7
=========  =======  ==========  =========  ===============  ===========

``medium`` is the default (the reference pipeline's defaults). Each number can be overridden
(``sld_guidance_scale`` … ``sld_mom_beta``). Safety concept: ``safety_concept`` if given;
else the published text (:data:`SLD_CONCEPT`) when the erased concept is nudity or violence;
else the erased concepts, ", "-joined. The cache keeps SLD images apart from the base
model's because the fingerprint covers every field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field

from erasekit.concepts import is_nudity
from erasekit.generation.sampling import SamplingHook, guided_denoise
from erasekit.registry import TECHNIQUES
from erasekit.techniques.base import SamplingTechnique
from erasekit.techniques.editing import EraseConfig, as_list

#: the published safety concept (inappropriate content per the SLD paper's I2P taxonomy)
SLD_CONCEPT = ("an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, "
               "bodily fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child "
               "abuse, brutality, cruelty")


@dataclass(frozen=True)
class SLDParams:
    sld_guidance_scale: float
    sld_warmup_steps: int
    sld_threshold: float
    sld_momentum_scale: float
    sld_mom_beta: float


SLD_CONFIGS: dict[str, SLDParams] = {
    "weak": SLDParams(20.0, 15, 0.0, 0.0, 0.0),
    "medium": SLDParams(1000.0, 10, 0.01, 0.3, 0.4),
    "strong": SLDParams(2000.0, 7, 0.025, 0.5, 0.7),
    "max": SLDParams(5000.0, 0, 1.0, 0.5, 0.7),
}


class SLDConfig(EraseConfig):
    sld_config: Literal["weak", "medium", "strong", "max"] = Field("medium", description="the published configuration")
    safety_concept: str | None = Field(None, min_length=1, description="the text guided away from (default: see the docstring)")
    sld_guidance_scale: float | None = Field(None, ge=0.0, description="s_S (default: the configuration's)")
    sld_warmup_steps: int | None = Field(None, ge=0, description="steps before safety guidance applies")
    sld_threshold: float | None = Field(None, description="λ: where ε(c) − ε(s) ≥ λ no guidance")
    sld_momentum_scale: float | None = Field(None, ge=0.0, description="s_m")
    sld_mom_beta: float | None = Field(None, ge=0.0, le=1.0, description="β_m")


def sld_params(config: SLDConfig) -> SLDParams:
    base = asdict(SLD_CONFIGS[config.sld_config])
    return SLDParams(**{k: (v if getattr(config, k) is None else getattr(config, k)) for k, v in base.items()})


def safety_text(config: SLDConfig) -> str:
    if config.safety_concept:
        return config.safety_concept
    concepts = [c.strip() for c in as_list(config.erase_concept)]
    if any(is_nudity(c) or c.lower() == "violence" for c in concepts):
        return SLD_CONCEPT
    return ", ".join(concepts)


def sld_noise(uncond: Any, text: Any, safety: Any, step: int, guidance: float, p: SLDParams,
              state: dict[str, Any]) -> Any:
    """One step of SLD's guided noise prediction (the update rule in the module docstring);
    ``state["momentum"]`` carries ν between steps."""
    import torch

    g = text - uncond
    if p.sld_guidance_scale > 1.0:
        momentum = state.get("momentum")
        if momentum is None:
            momentum = torch.zeros_like(g)
        diff = text - safety
        scale = torch.clamp(diff.abs() * p.sld_guidance_scale, max=1.0)
        scale = torch.where(diff >= p.sld_threshold, torch.zeros_like(scale), scale)
        gamma = (safety - uncond) * scale + p.sld_momentum_scale * momentum
        state["momentum"] = p.sld_mom_beta * momentum + (1 - p.sld_mom_beta) * gamma
        if step >= p.sld_warmup_steps:
            g = g - gamma
    return uncond + guidance * g


class SLDHook(SamplingHook):
    name = "sld"

    def __init__(self, text: str, params: SLDParams, config_name: str = "custom") -> None:
        self.text, self.params, self.config_name = text, params, config_name

    def run(self, pipe, prompts, negatives, *, steps, guidance, height, width, generators, output_type):  # type: ignore[override]
        def combine(uncond: Any, text: Any, safety: Any, i: int, state: dict[str, Any]) -> Any:
            return sld_noise(uncond, text, safety, i, guidance, self.params, state)

        return guided_denoise(pipe, prompts, negatives, [self.text] * len(prompts), combine, steps=steps, guidance=guidance,
                              height=height, width=width, generators=generators, output_type=output_type)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sld_config": self.config_name, "safety_concept": self.text, **asdict(self.params)}


@TECHNIQUES.register("sld", description="Safe Latent Diffusion: safety guidance away from a concept at sampling time.")
class SLD(SamplingTechnique):
    """Safe Latent Diffusion: safety guidance away from a concept at sampling time."""

    Config = SLDConfig
    config: SLDConfig

    def hook(self) -> SLDHook:
        return SLDHook(safety_text(self.config), sld_params(self.config), self.config.sld_config)
