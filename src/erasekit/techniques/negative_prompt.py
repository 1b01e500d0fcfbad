"""The negative-prompt baseline: the concept as the negative prompt of classifier-free guidance.

The cheapest inference-time "erasure" and the baseline any erasure must beat: no weight
changes; at every step the sampler moves away from the concept's text instead of from the
empty prompt (``ε = ε(∅→neg) + w·(ε(c) − ε(neg))``, diffusers' negative prompt). The concept
text is ``negative_prompt`` if given, else the erased concepts joined by ", ". A request that
already has a negative prompt (a metric's own) keeps it and gets the concept appended.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasekit.generation.sampling import SamplingHook, install, sample
from erasekit.registry import TECHNIQUES
from erasekit.techniques.base import SamplingTechnique
from erasekit.techniques.editing import EraseConfig, as_list


class NegativePromptConfig(EraseConfig):
    negative_prompt: str | None = Field(None, min_length=1, description="the negative text (default: the erased concepts, ', '-joined)")


def negative_text(config: NegativePromptConfig) -> str:
    return config.negative_prompt or ", ".join(c.strip() for c in as_list(config.erase_concept))


class NegativePromptHook(SamplingHook):
    """Adds the concept text to every image's negative prompt, then samples as usual."""

    name = "negative_prompt"

    def __init__(self, text: str) -> None:
        self.text = text

    def negatives(self, given: list[str | None]) -> list[str]:
        return [f"{g}, {self.text}" if g else self.text for g in given]

    def run(self, pipe, prompts, negatives, *, steps, guidance, height, width, generators, output_type):  # type: ignore[override]
        install(pipe, None)  # the plain call, with our negatives (re-installed below)
        try:
            return sample(pipe, prompts, self.negatives(negatives), steps=steps, guidance=guidance, height=height,
                          width=width, generators=generators, output_type=output_type)
        finally:
            install(pipe, self)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "negative_prompt": self.text}


@TECHNIQUES.register("negative_prompt", description="Baseline: the concept as the negative prompt (no weight change).")
class NegativePrompt(SamplingTechnique):
    """Baseline: the concept as the negative prompt (no weight change)."""

    Config = NegativePromptConfig
    config: NegativePromptConfig

    def hook(self) -> NegativePromptHook:
        return NegativePromptHook(negative_text(self.config))
