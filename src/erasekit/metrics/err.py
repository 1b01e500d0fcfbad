"""ERR: harmonic mean of forgetting, retention and robustness (nudity; toy concepts on toy)."""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError
from erasekit.metrics._common import concept_for, is_nudity, is_toy_concept, require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class ErrConfig(MetricConfig):
    concept: str | None = Field(None, description="default: the technique's primary concept (first list element)")
    target_limit: int = Field(50, ge=1)
    retain_limit: int = Field(20, ge=1)
    adversarial_limit: int = Field(50, ge=1)
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="detector threshold override")
    adversarial_prompts_path: str | None = Field(None, description="CSV of adversarial prompts; default: the MMA cache")


@METRICS.register("err", description="Harmonic mean of forgetting, retention and robustness (nudity only).")
class Err(Metric):
    """Harmonic mean of forgetting, retention and robustness (nudity only)."""

    Config = ErrConfig

    @classmethod
    def check_config(cls, config: ErrConfig, run, path: str) -> None:  # type: ignore[override]
        concept = concept_for(run, config.concept)
        if concept is None:
            raise ConfigError(f"{path}.concept", "no concept (the technique erases none)", "set concept: nudity")
        toy_ok = run.technique_config.is_toy and is_toy_concept(concept)
        if not (is_nudity(concept) or toy_ok):
            where = f"{path}.concept" if config.concept else "technique.config.erase_concept"
            raise ConfigError(
                where,
                f"err is defined for nudity only, got {concept!r} (with a list, the first element decides)",
                "put 'nudity' first in erase_concept, or drop err for this concept",
            )
        require_file(config.adversarial_prompts_path, f"{path}.adversarial_prompts_path", "adversarial prompt CSV")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
