"""The metric contract (torchmetrics-style declared direction, lm-eval-harness-style requests).

A metric is one module in this package: a pydantic ``Config`` (the generic parameter of
:class:`Metric`), class attributes that say what its number means, and four methods the
runner calls in this order, once per evaluated model:

1. ``setup()`` — load prompt sets and resolve everything the config leaves open
   (the runner calls it through :meth:`Metric.create`, so a bad file fails before any image
   is generated);
2. ``prepare(rank, world)`` — optional expensive precomputation split across ranks;
3. ``requests()`` — the images it needs, in a fixed order;
4. ``compute(images)`` — score exactly those images (same order).

A metric never calls the pipeline to draw images, so the runner can deduplicate requests
across metrics, reuse cached images, shard generation and evaluate the base model with the
same requests. Nothing outside this module needs to know a metric's name: BenchScore,
``erasekit list`` and report.html read ``higher_is_better``, ``group``, ``presets`` and
``scores`` from the class (and the runner copies them into report.json).
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from erasekit.config import MetricConfig
from erasekit.generation.request import GeneratedImage, ImageRequest
from erasekit.metrics.protocols import Protocol

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun
    from erasekit.world import World

Group = Literal["safety", "quality", "retention"]
GROUPS: tuple[str, ...] = typing.get_args(Group)
C = TypeVar("C", bound=MetricConfig)


@dataclass(frozen=True)
class Score:
    """One number a metric contributes to BenchScore.

    ``source`` is ``"value"`` (the metric's value) or the key of a number in its details
    (``"ua"``); ``name`` is how compare tables call it.
    """

    name: str
    group: Group
    higher_is_better: bool
    source: str = "value"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    #: fingerprint of the unedited base model: an attack that compares with it (P4D) or draws its
    #: target images from it (UnlearnDiffAtk) knows whether ``pipe`` still is that model
    base_fingerprint: str | None = None
    #: whether the pipeline runs in half precision (a base model an attack loads again runs the same)
    half_precision: bool = False

    @property
    def model_id(self) -> str:
        return self.run.technique_config.model_id

    @property
    def world(self) -> World:
        """The model's world: vocabulary, default prompt sets, judges (:mod:`erasekit.world`)."""
        return self.run.world

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


class Metric(ABC, Generic[C]):
    """Base class: ``class MyMetric(Metric[MyConfig])`` plus the class attributes below.

    ``Config`` is taken from the generic parameter when the subclass does not set it.
    """

    Config: ClassVar[type[MetricConfig]] = MetricConfig
    #: direction of ``value``: True when a larger number is a better erasure / model
    higher_is_better: ClassVar[bool]
    #: what the value measures: the erasure itself (safety), image quality, or what survives (retention)
    group: ClassVar[Group]
    #: named evaluation protocols (``preset``), each a set of config defaults with its source
    #: (:mod:`erasekit.metrics.protocols`); ``presets`` (name → one line) is derived from them
    protocols: ClassVar[dict[str, Protocol]] = {}
    #: the protocol a config without ``preset`` runs (the spec system's, unless the spec says otherwise)
    default_protocol: ClassVar[str | None] = None
    presets: ClassVar[dict[str, str]] = {}
    #: BenchScore entries; empty means one entry from ``value`` with the class's group and direction
    scores: ClassVar[tuple[Score, ...]] = ()
    #: False keeps the metric out of BenchScore (e.g. a composite of numbers already counted)
    in_benchscore: ClassVar[bool] = True
    #: a config block that runs in seconds on the toy world (contract tests, ``erasekit list METRIC``)
    example: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" not in cls.__dict__:
            for base in getattr(cls, "__orig_bases__", ()):
                args = typing.get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], MetricConfig):
                    cls.Config = args[0]
                    break
        if "protocols" in cls.__dict__ and cls.protocols:
            cls.presets = {name: p.describe() for name, p in cls.protocols.items()}
            if cls.default_protocol not in cls.protocols:
                raise TypeError(f"{cls.__name__}.default_protocol must name one of its protocols")

    def __init__(self, config: C, ctx: MetricContext, path: str = "metric.config") -> None:
        self.config: C = config
        self.ctx = ctx
        #: dotted config path of this metric's block (``metrics[2].config``), for error messages
        self.path = path

    @classmethod
    def create(cls, config: C, ctx: MetricContext, path: str = "metric.config") -> Metric[C]:
        """Construct and :meth:`setup` — how the runner (and tests) obtain a ready metric."""
        metric = cls(config, ctx, path)
        metric.setup()
        return metric

    def field(self, name: str) -> str:
        """The dotted config path of one of this metric's keys (``metrics[2].config.limit``)."""
        return f"{self.path}.{name}"

    @property
    def world(self) -> World:
        return self.ctx.world

    @classmethod
    def benchscore_entries(cls) -> list[Score]:
        """What BenchScore reads from this metric (see :class:`Score`)."""
        if not cls.in_benchscore:
            return []
        if cls.scores:
            return list(cls.scores)
        name = getattr(cls, "registry_name", None) or cls.__name__.lower()
        return [Score(name=name, group=cls.group, higher_is_better=cls.higher_is_better)]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The metric's declared meaning, as written into report.json next to its value."""
        return {
            "higher_is_better": cls.higher_is_better,
            "group": cls.group,
            "benchscore": [s.as_dict() for s in cls.benchscore_entries()],
        }

    #: defaults of model keys a config may leave open (``None``): key → model the world maps it to
    default_models: ClassVar[dict[str, str]] = {"clip_model": "openai/clip-vit-large-patch14"}

    def resolved_config(self, device: str) -> dict[str, Any]:
        """The config as this run uses it (report.json ``config_used``): ``device: auto`` resolved,
        and model keys left open filled with the model the world picks (the toy mini-CLIP …)."""
        out = self.config.model_dump(mode="json")
        if out.get("device") == "auto":
            out["device"] = device
        for key, default in self.default_models.items():
            if key in out and out[key] is None:
                out[key] = self.world.vqa_model(None, default) if key == "vqa_model" else self.world.clip_model(None, default)
        return out

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def check_config(cls, config: C, run: ResolvedRun, path: str) -> None:
        """Compatibility checks needing no model; raise ConfigError(f"{path}.field", …)."""

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def check_assets(cls, config: C, run: ResolvedRun, path: str) -> None:
        """That every model / dataset / weights file this metric will read is on this machine
        (helpers in :mod:`erasekit.assets`); raise ConfigError naming the field. Reads no weights."""

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def check_family(cls, config: C, family: str, path: str) -> None:
        """ConfigError (helper :func:`erasekit.models.families.require_family`) when this metric cannot
        run on the model family (``sd1``, ``sd2``, ``sdxl``); called before any model loads."""

    def setup(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Load prompt sets / resolve defaults (called once, by :meth:`create`)."""

    def prepare(self, rank: int, world: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Optional expensive precomputation split across ranks (e.g. adversarial attacks).

        Called on every rank before :meth:`requests` in a distributed run, followed by a
        barrier: rank ``r`` should compute only its share (``items[r::world]``) and write it
        to a shared cache, so that ``requests()`` afterwards finds everything cached. The
        default does nothing; single-process runs call ``prepare(0, 1)``.
        """

    def prefetch(self, images: list[GeneratedImage]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Judge some of this metric's images while the rest are still being generated (the runner
        calls it from a scoring thread with each committed batch). Only verdicts may be computed here,
        through :meth:`erasekit.detectors.base.Detector.prefetch`, so :meth:`compute` gives the
        same numbers whether or not it ran; anything it raises is ignored (``compute`` redoes it)."""

    @abstractmethod
    def requests(self) -> list[ImageRequest]:
        """The images this metric needs, in a fixed order."""

    @abstractmethod
    def compute(self, images: list[GeneratedImage]) -> MetricResult:
        """Score ``images`` (same order as ``requests()``)."""
