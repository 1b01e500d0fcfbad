"""The shape of report.json, as pydantic models: what the runner writes and every reader loads.

Two rules keep old and new reports loading:

- every field is optional with a default, so a partial report (a run that crashed after
  the technique, or one still ``running``) validates;
- ``extra="allow"`` everywhere, so a key added by a later version (or a metric's own
  extension) survives a load → dump round trip instead of failing.

The runner keeps the report as a plain dict while it runs (the code that fills it in is
spread over the run) and passes it through :func:`report_json` on every save, so what
lands on disk has always been validated against :class:`Report`. :func:`report_json`
dumps only the keys that were given (``exclude_unset``) and never drops a ``None``: the
file has exactly the keys and layout the runner built, e.g. ``base_value`` / ``delta``
only when the base model was evaluated, ``finished_at: null`` while running.

Each metric entry carries its declared meaning (``higher_is_better``, ``group``,
``benchscore``; see :mod:`erasekit.metrics.base`), so report.html and ``erasekit compare``
read it from the report instead of knowing metric names. :func:`declared` falls back to the
registered metric class for reports written before those keys existed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erasekit.errors import ConfigError

REPORT_NAME = "report.json"


class ReportError(ConfigError):
    """A run folder without a readable report.json (a bad argument: exit 2, one line)."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class BenchScoreEntry(_Open):
    """One number a metric contributes to BenchScore (``erasekit.metrics.base.Score``)."""

    name: str
    group: str
    higher_is_better: bool
    source: str = "value"


class MetricEntry(_Open):
    """``report.json["metrics"][key]``: the value of one configured metric (and of the base model)."""

    name: str | None = None
    status: str = "pending"
    value: float | None = None
    details: dict[str, Any] | None = Field(default_factory=dict)
    seconds: float | None = None
    error: str | None = None
    traceback: str | None = None
    base_value: float | None = None
    base_details: dict[str, Any] | None = None
    base_status: str | None = None
    base_error: str | None = None
    delta: float | None = None
    higher_is_better: bool | None = None
    group: str | None = None
    benchscore: list[BenchScoreEntry] | None = None
    #: what the number was computed under (:func:`erasekit.metrics.protocols.protocol_record`)
    protocol: dict[str, Any] | None = None
    base_protocol: dict[str, Any] | None = None

    @property
    def has_base(self) -> bool:
        """Whether the base model was evaluated for this metric (even if it failed there)."""
        return bool({"base_value", "base_status"} & self.model_fields_set) or self.base_value is not None


class ModelInfo(_Open):
    id: str | None = None
    base_fingerprint: str | None = None
    fingerprint: str | None = None
    device: str | None = None
    dtype: str | None = None


class TechniqueInfo(_Open):
    name: str | None = None
    status: str = "pending"
    seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


class ImagesInfo(_Open):
    requested: int = 0
    unique: int = 0
    generated: int = 0
    reused: int = 0
    by_model: dict[str, dict[str, int]] | None = None
    generated_by_rank: dict[str, list[int]] | None = None


class Paths(_Open):
    output_dir: str | None = None
    cache_dir: str | None = None


class Seeds(_Open):
    run_seed: int | None = None
    image_seed_rule: str | None = None


class Distributed(_Open):
    world_size: int = 1


class Report(_Open):
    """``report.json`` of one run (``status``: running, ok, failed, crashed or interrupted)."""

    erasekit_version: str | None = None
    run_id: str | None = None
    status: str = "running"
    started_at: str | None = None
    finished_at: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    #: ``config`` as the run used it: resolved devices, the precision it ran in, the models that
    #: metrics left open (``clip_model: null`` → the mini-CLIP on toy); written once metrics are set up
    config_used: dict[str, Any] | None = None
    paths: Paths = Field(default_factory=Paths)
    model: ModelInfo = Field(default_factory=ModelInfo)
    technique: TechniqueInfo = Field(default_factory=TechniqueInfo)
    seeds: Seeds = Field(default_factory=Seeds)
    sampler: dict[str, Any] = Field(default_factory=dict)
    images: ImagesInfo = Field(default_factory=ImagesInfo)
    metrics: dict[str, MetricEntry] = Field(default_factory=dict)
    timings: dict[str, Any] = Field(default_factory=dict)
    #: images/s of generation (per model variant: pipeline calls and cache writes apart) and of each
    #: detector, and ``time_split``: seconds in load, technique, attack (metric preparation),
    #: generation, scoring and report
    throughput: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)
    distributed: Distributed = Field(default_factory=Distributed)
    error: str | None = None

    @property
    def has_base(self) -> bool:
        return any(m.has_base for m in self.metrics.values())

    def to_json_dict(self) -> dict[str, Any]:
        """The dict report.json holds: given keys only, ``None`` kept, JSON types only."""
        from erasekit.utils.atomic_io import to_jsonable

        return to_jsonable(self.model_dump(mode="python", exclude_unset=True, exclude_none=False))


def entry_json(entry: dict[str, Any] | MetricEntry) -> dict[str, Any]:
    """A metric entry validated against :class:`MetricEntry` and dumped like :meth:`Report.to_json_dict`."""
    from erasekit.utils.atomic_io import to_jsonable

    if isinstance(entry, dict):
        entry = MetricEntry.model_validate(to_jsonable(entry))
    return to_jsonable(entry.model_dump(mode="python", exclude_unset=True, exclude_none=False))


def report_json(report: dict[str, Any] | Report) -> dict[str, Any]:
    """Validate the runner's report dict against :class:`Report` and return what to write.

    Raises ``pydantic.ValidationError`` when the dict does not fit the schema.
    """
    from erasekit.utils.atomic_io import to_jsonable

    if isinstance(report, dict):
        report = Report.model_validate(to_jsonable(report))
    return report.to_json_dict()


def report_path(run_dir_or_path: str | Path) -> Path:
    p = Path(run_dir_or_path)
    return p if p.suffix == ".json" and not p.is_dir() else p / REPORT_NAME


def load_report(run_dir_or_path: str | Path) -> Report:
    """Load a run's report.json (give the run's output_dir or the file itself).

    A missing, unreadable or invalid file raises :class:`ReportError` with one line.
    """
    given = str(run_dir_or_path)
    p = report_path(run_dir_or_path)
    if not p.is_file():
        raise ReportError(given, f"no {REPORT_NAME} (is this a run's output_dir?)", "pass the output_dir of a run")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(str(p), f"cannot read {REPORT_NAME} ({exc.__class__.__name__})", "check the file") from None
    except json.JSONDecodeError as exc:
        raise ReportError(str(p), f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                          "rerun the run to rewrite it") from None
    if not isinstance(data, dict):
        raise ReportError(str(p), f"the top level must be an object, got {type(data).__name__}", "pass a run's report.json")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "<report>"
        raise ReportError(str(p), f"{where}: {first.get('msg', 'invalid value')}", "rerun the run to rewrite it") from None


# ------------------------------------------------------------------ declared meaning


def metric_class(name: str | None) -> type | None:
    """The registered metric class called ``name`` (``asr_custom#2`` → ``asr_custom``), or None."""
    if not name:
        return None
    try:
        from erasekit.registry import METRICS, load_builtins

        load_builtins()
        return METRICS.get(name.split("#", 1)[0])
    except Exception:  # noqa: BLE001 - a metric that no longer exists, or a broken plugin
        return None


def pending_entry(name: str, key: str, cls: type | None) -> MetricEntry:
    """A metric's entry before it is scored, with its declared meaning (``Metric.describe()``:
    direction, group, BenchScore entries) so report readers never need its name. A metric
    class that does not declare them still runs; its entry just lacks those keys."""
    declared = {k: v for k, v in class_describe(cls).items() if k in ("higher_is_better", "group", "benchscore")}
    try:
        return MetricEntry(name=name, status="pending", value=None, details={}, seconds=None, **declared)
    except Exception:  # noqa: BLE001 - a malformed declaration must not stop the run
        logging.getLogger("erasekit").warning("metric %s: could not record its declared direction/group", key, exc_info=True)
        return MetricEntry(name=name, status="pending", value=None, details={}, seconds=None)


def class_describe(cls: type | None) -> dict[str, Any]:
    """``cls.describe()`` if the class declares its meaning; ``{}`` otherwise (never raises)."""
    if cls is None:
        return {}
    try:
        d = cls.describe()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a metric without the declared attributes
        d = None
    if isinstance(d, dict):
        return d
    out: dict[str, Any] = {}
    for k in ("higher_is_better", "group"):
        v = getattr(cls, k, None)
        if v is not None:
            out[k] = v
    return out


def declared(entry: MetricEntry | None, key: str | None = None) -> dict[str, Any]:
    """``{"higher_is_better", "group", "benchscore"}`` of a metric entry: from the entry itself,
    else from its registered class (old reports). A value nobody declares is None."""
    out: dict[str, Any] = {"higher_is_better": None, "group": None, "benchscore": None}
    if entry is not None:
        out["higher_is_better"] = entry.higher_is_better
        out["group"] = entry.group
        if entry.benchscore is not None:
            out["benchscore"] = [b.model_dump(include={"name", "group", "higher_is_better", "source"}) for b in entry.benchscore]
    if any(v is None for v in out.values()):
        cls = metric_class((entry.name if entry is not None else None) or key)
        fallback = class_describe(cls)
        for k in out:
            if out[k] is None and fallback.get(k) is not None:
                out[k] = fallback[k]
    return out


def direction_label(higher_is_better: bool | None, short: bool = False) -> str:
    if higher_is_better is None:
        return "?" if short else "direction not declared"
    if short:
        return "↑" if higher_is_better else "↓"
    return "↑ higher is better" if higher_is_better else "↓ lower is better"
