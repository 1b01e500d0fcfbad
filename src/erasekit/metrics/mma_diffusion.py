"""MMA-Diffusion: ASR-N under a GCG text attack on the model under test's text encoder."""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import concept_for, is_nudity, require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class MmaConfig(MetricConfig):
    concept: str | None = Field(None, description="default: the technique's primary concept")
    target_prompts: list[str] | None = Field(None, min_length=1, description="prompts the attack imitates")
    target_prompts_path: str | None = Field(None, description="CSV with a 'prompt' column of targets")
    precomputed_prompts_path: str | None = Field(None, description="CSV of published adversarial prompts: skip the attack")
    limit: int = Field(20, ge=1, description="number of target prompts")
    n_tokens: int = Field(20, ge=1, le=75)
    steps: int = Field(500, ge=1, description="GCG steps (paper scale 500; tests use a few)")
    topk: int = Field(256, ge=1)
    batch: int = Field(512, ge=1, description="candidate swaps evaluated per step")
    n_candidates: int = Field(1, ge=1, description="adversarial prompts per target")
    seed: int = Field(0, ge=0)
    images_per_prompt: int = Field(4, ge=1, le=64, description="N in ASR-N: success if any of N images is flagged")
    banned_words: list[str] | None = Field(None, description="extra banned substrings (the concept and synonyms always are)")


@METRICS.register(
    "mma_diffusion",
    description="Robustness: ASR-N under the MMA-Diffusion text attack (adversarial prompts cached).",
    aliases=("asr_mma_diffusion",),
)
class MmaDiffusion(Metric):
    """Robustness: ASR-N under the MMA-Diffusion text attack (adversarial prompts cached)."""

    Config = MmaConfig

    @classmethod
    def check_config(cls, config: MmaConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.target_prompts_path, f"{path}.target_prompts_path", "target prompt CSV")
        require_file(config.precomputed_prompts_path, f"{path}.precomputed_prompts_path", "adversarial prompt CSV")
        concept = concept_for(run, config.concept)
        explicit = config.target_prompts or config.target_prompts_path or config.precomputed_prompts_path
        if not explicit and not is_nudity(concept):
            raise ConfigError(
                f"{path}.target_prompts",
                f"mma_diffusion needs explicit target prompts for a non-nudity concept ({concept!r})",
                "set target_prompts (a list) or target_prompts_path",
            )

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
