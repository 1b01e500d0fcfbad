"""The metric interface (torchmetrics-style state, lm-eval-harness-style requests).

A metric is configured by a typed ``Config``; it *declares* the images it needs
(``requests``) and *scores* the images it is handed (``compute``). It never calls the
pipeline, so the runner can deduplicate requests across metrics, reuse cached
images, shard generation, and evaluate the base model with the same requests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erasekit.config import MetricConfig
from erasekit.generation.request import GeneratedImage, ImageRequest

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun


@dataclass
class MetricResult:
    """``value`` (None only when a metric has no single number), ``details`` (protocol,
    counts, sub-scores), and one ``records`` entry per scored image."""

    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MetricContext:
    """What a metric may use: the run, the model under test (read-only), shared detectors.

    ``pipe`` is given so attacks can use the model's text path; metrics must not
    generate images with it. ``variant`` is "erased" or "base" (compare_to_base).
    """

    run: ResolvedRun
    pipe: Any
    model_fingerprint: str
    detectors: Any  # erasekit.detectors.DetectorPool
    cache_dir: Path
    variant: str = "erased"
    log: Any = None

    @property
    def model_id(self) -> str:
        return self.run.technique_config.model_id

    @property
    def is_toy(self) -> bool:
        return self.model_id == "toy"

    @property
    def concepts(self) -> list[str]:
        return self.run.concepts()

    @property
    def seed(self) -> int:
        return self.run.raw.seed


def image_record(image: GeneratedImage, **fields: Any) -> dict[str, Any]:
    """One records.jsonl row for a scored image: what was asked, which cached file, and
    the metric's own fields (detector scores, decision …). The runner adds metric + model."""
    req = image.request
    row: dict[str, Any] = {"prompt": req.prompt, "seed": req.seed, "cache_key": image.key}
    if req.negative_prompt:
        row["negative_prompt"] = req.negative_prompt
    if req.guidance_scale is not None:
        row["guidance_scale"] = req.guidance_scale
    row.update(fields)
    return row


class Metric(ABC):
    """Base class. Subclasses set ``Config`` and implement ``requests`` and ``compute``."""

    Config: ClassVar[type[MetricConfig]] = MetricConfig

    def __init__(self, config: MetricConfig, ctx: MetricContext) -> None:
        self.config = config
        self.ctx = ctx

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def check_config(cls, config: MetricConfig, run: ResolvedRun, path: str) -> None:
        """Compatibility checks needing no model; raise ConfigError(f"{path}.field", …)."""

    def prepare(self, rank: int, world: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Optional expensive precomputation split across ranks (e.g. adversarial attacks).

        Called on every rank before :meth:`requests` in a distributed run, followed by a
        barrier: rank ``r`` should compute only its share (``items[r::world]``) and write it
        to a shared cache, so that ``requests()`` afterwards finds everything cached. The
        default does nothing; single-process runs call ``prepare(0, 1)``.
        """

    @abstractmethod
    def requests(self) -> list[ImageRequest]:
        """The images this metric needs, in a fixed order."""

    @abstractmethod
    def compute(self, images: list[GeneratedImage]) -> MetricResult:
        """Score ``images`` (same order as ``requests()``)."""
