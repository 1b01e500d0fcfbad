"""Run configs: the spec's shape, strictly validated before any model loads.

A run config is ``output_dir`` + ``technique {name, config}`` + ``metric`` or
``metrics``. The raw shape is parsed here; the ``config`` blocks are then
validated against the typed model of the registered technique / metric, and the
spec's cross-field compatibility rules run. Every failure becomes a
:class:`~erasekit.errors.ConfigError` naming the dotted path and the fix, which
the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from erasekit.errors import ConfigError
from erasekit.registry import METRICS, TECHNIQUES, load_builtins
from erasekit.utils.canonical import stable_hash

if TYPE_CHECKING:
    from erasekit.world import World

DEFAULT_MODEL_ID = "CompVis/stable-diffusion-v1-4"


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, defaults are validated.

    ``key_aliases`` (merged along the class hierarchy) maps an accepted old or foreign name to
    the canonical key (``"concept_name": "concept"``), or to a key of a nested block
    (``"steps": "attack.steps"``). The alias is renamed before validation, so the normalised
    config in report.json always shows the canonical name; giving both is an error.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)
    key_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def all_key_aliases(cls) -> dict[str, str]:
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("key_aliases", {}))
        return out

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_numbers(cls, v: Any) -> Any:
        """No config number needs more than 64 bits, and none may be infinite or NaN: a 5000-digit
        integer or ``1e400`` is a typo or an attack (and cannot even be printed or hashed)."""
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63 - 1:
            raise ValueError("integer too large (at most 2**63 - 1)")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("not a finite number")
        return v

    @model_validator(mode="before")
    @classmethod
    def _canonical_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        aliases = cls.all_key_aliases()
        if not any(isinstance(k, str) and k in aliases for k in data):
            return data
        data = dict(data)
        for alias, canon in aliases.items():
            if alias not in data:
                continue
            value = data.pop(alias)
            head, _, rest = canon.partition(".")
            if not rest:
                if canon in data:
                    raise ValueError(f"'{alias}' is another name for '{canon}' and both are set; keep '{canon}'")
                data[canon] = value
                continue
            block = data.get(head)
            if block is None:
                block = {}
            elif not isinstance(block, dict):
                raise ValueError(f"'{head}' must be a mapping (the '{alias}' key belongs in it)")
            if rest in block:
                raise ValueError(f"'{alias}' is another name for '{canon}' and both are set; keep '{canon}'")
            data[head] = {**block, rest: value}
        return data


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]{1,3})?)$")


def _check_device(v: str) -> str:
    """Exactly the device strings ``run`` can use (``auto:1``, ``xpu``, ``cpu:-1`` are not)."""
    if not _DEVICE_RE.match(v.strip().lower()):
        raise ValueError("unknown device; use 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
    return v.strip().lower()


class TechniqueConfig(StrictModel):
    """Fields every technique shares: which base model, and how images are sampled from it.

    ``num_inference_steps`` / ``guidance_scale`` default to the base model's own
    defaults (SD v1.4: 50 steps, guidance 7.5 as in the spec; the toy world: its
    documented defaults). The normalised config in the report shows the value used.
    """

    model_id: str = Field(DEFAULT_MODEL_ID, min_length=1, description="HF id, local diffusers folder, or 'toy'")
    num_inference_steps: int | None = Field(None, ge=1, le=1000, description="DDIM steps for generation")
    guidance_scale: float | None = Field(None, ge=0.0, le=100.0, description="classifier-free guidance scale")
    use_fp16: bool = Field(True, description="half precision (only on CUDA; ignored with a log line elsewhere)")
    device: str = Field("cuda", description="'cuda', 'cuda:N', 'cpu', 'mps' or 'auto'")

    _validate_device = field_validator("device")(classmethod(lambda cls, v: _check_device(v)))


class MetricConfig(StrictModel):
    """Fields every metric shares (the shared blocks for the rest are in :mod:`erasekit.metrics.fields`)."""

    device: str = Field("auto", description="where detectors / feature nets run")
    preset: str | None = Field(None, description="a named evaluation protocol (see `erasekit list`)")

    _validate_device = field_validator("device")(classmethod(lambda cls, v: _check_device(v)))


class TechniqueSpec(StrictModel):
    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)


class MetricSpec(StrictModel):
    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)


class RunConfig(StrictModel):
    """The top-level shape of a config file (spec shape + documented extensions)."""

    output_dir: str = Field(min_length=1)
    technique: TechniqueSpec
    metric: MetricSpec | None = None
    metrics: list[MetricSpec] | None = None
    seed: int = Field(0, ge=0, le=2**63 - 1, description="global seed mixed into every image seed")
    cache_dir: str | None = Field(None, description="image/attack cache (default: <output_dir>/cache)")
    batch_size: int = Field(8, ge=1, le=4096, description="images per generation batch")
    compare_to_base: bool = Field(False, description="also evaluate the unedited base model")
    overlap: bool = Field(True, description="write PNGs (and, on an accelerator, judge images) beside generation; same numbers either way")
    compile: bool = Field(False, description="torch.compile the UNet (CUDA; images within the tolerance README states)")


# ---------------------------------------------------------------- resolution


@dataclass
class ResolvedMetric:
    """One metric of a run: where it sits in the config, its class and typed config."""

    path: str  # "metric" or "metrics[2]"
    name: str  # canonical registry name
    key: str  # unique key in the report ("asr_custom", or "asr_custom#2" for repeats)
    cls: type
    config: Any


@dataclass
class ResolvedRun:
    """A validated run: the raw config plus typed technique/metric configs."""

    raw: RunConfig
    technique_name: str
    technique_cls: type
    technique_config: Any
    metrics: list[ResolvedMetric] = field(default_factory=list)
    source: Path | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.raw.output_dir).expanduser()

    @property
    def world(self) -> World:
        """The world of the run's model (vocabulary, default prompt sets, judges)."""
        from erasekit.world import world_for

        return world_for(self.technique_config.model_id)

    @property
    def cache_dir(self) -> Path:
        return Path(self.raw.cache_dir).expanduser() if self.raw.cache_dir else self.output_dir / "cache"

    def concepts(self) -> list[str]:
        """The concepts the technique erases (first = primary), empty for the baseline."""
        return list(self.technique_cls.concepts(self.technique_config))

    def normalised(self) -> dict[str, Any]:
        """The config with every default filled in: what the report records and the run id hashes."""
        from erasekit.models.loading import sampler_defaults

        tech = self.technique_config.model_dump(mode="json")
        defaults = sampler_defaults(self.technique_config.model_id)
        if tech.get("num_inference_steps") is None:
            tech["num_inference_steps"] = defaults.num_inference_steps
        if tech.get("guidance_scale") is None:
            tech["guidance_scale"] = defaults.guidance_scale
        out: dict[str, Any] = {
            "output_dir": self.raw.output_dir,
            "seed": self.raw.seed,
            "cache_dir": str(self.cache_dir),
            "batch_size": self.raw.batch_size,
            "compare_to_base": self.raw.compare_to_base,
            "overlap": self.raw.overlap,
            "compile": self.raw.compile,
            "technique": {"name": self.technique_name, "config": tech},
            "metrics": [{"name": m.name, "config": m.config.model_dump(mode="json")} for m in self.metrics],
        }
        return out

    def run_id(self) -> str:
        """Hash of the canonical normalised config: the same config always gives the same id.

        ``output_dir``/``cache_dir``/``overlap`` do not change any number, so they are left out: moving a
        run (or turning overlap off) does not change its identity. ``batch_size`` stays in: pixels depend on it (±1 grey
        level on a few pixels, measured), so two batch sizes are two runs.
        """
        norm = self.normalised()
        for k in ("output_dir", "cache_dir", "overlap"):  # overlap changes when work happens, never a number
            norm.pop(k, None)
        return stable_hash(norm, 16)


# ---------------------------------------------------------------- errors

_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "function-after", "function-before"}


def _loc_to_path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        s = str(part)
        if "[" in s or "(" in s or s in _TYPE_TAGS or s.startswith("literal"):
            continue  # union member tags, not config keys
        path = f"{path}.{s}" if path else s
    return path


def _fix_for(err: dict[str, Any], model: type[BaseModel] | None, loc_fields: tuple[Any, ...]) -> str:
    etype = err.get("type", "")
    ctx = err.get("ctx") or {}
    if etype == "extra_forbidden":
        allowed = _allowed_keys(model, loc_fields[:-1])
        bad = str(loc_fields[-1]) if loc_fields else ""
        import difflib

        close = difflib.get_close_matches(bad, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{hint}remove it; allowed keys here: {', '.join(allowed)}" if allowed else "remove it"
    if etype == "missing":
        return "add this required field"
    for bound, word in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if bound in ctx:
            return f"use a value {word} {ctx[bound]}"
    if "expected" in ctx:
        return f"use one of {ctx['expected']}"
    if etype.startswith(("int", "float", "bool", "string", "list", "dict", "model")):
        kind = etype.split("_")[0].replace("string", "string").replace("model", "mapping").replace("dict", "mapping")
        return f"give a {kind} value"
    if etype == "too_short":
        return "give a non-empty value"
    return "see `erasekit list` and the README for valid values"


def _allowed_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    m = model
    for part in loc:
        if m is None or isinstance(part, int):
            continue
        f = m.model_fields.get(str(part)) if hasattr(m, "model_fields") else None
        if f is None:
            m = None
            break
        ann = f.annotation
        m = _first_model(ann)
    if m is None or not hasattr(m, "model_fields"):
        return []
    return list(m.model_fields)


def _first_model(ann: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _first_model(arg)
        if m is not None:
            return m
    return None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 50, 50, 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 4


def _short_repr(value: Any) -> str:
    """At most ~60 characters of a value, computed without building the whole repr (a YAML
    "billion laughs" value or a 5000-digit integer must not cost seconds or crash the message)."""
    try:
        shown = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. int too large to convert to str
        shown = f"<{type(value).__name__}>"
    shown = shown.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 60 else shown[:57] + "..."


def validation_to_config_error(exc: ValidationError, prefix: str, model: type[BaseModel] | None) -> ConfigError:
    """Turn pydantic's first error into our one-line ConfigError."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ()))
    fields = tuple(p for p in loc if isinstance(p, int) or _loc_to_path("", (p,)))
    path = _loc_to_path(prefix, loc)
    msg = str(err.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif err.get("type") != "missing" and "input" in err:
        msg = f"{msg[:120]} (got {_short_repr(err['input'])})"
    return ConfigError(path, msg, _fix_for(err, model, fields))


# ---------------------------------------------------------------- loading


def load_config(path: str | Path) -> ResolvedRun:
    from erasekit.config_files import read_config_file

    run = resolve_config(read_config_file(path))
    run.source = Path(path)
    return run


def resolve_config(data: dict[str, Any]) -> ResolvedRun:
    """Validate a config dict completely: shape, typed blocks, compatibility rules.

    Loads no model. Raises ConfigError on the first problem.
    """
    load_builtins()
    try:
        raw = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_to_config_error(exc, "", RunConfig) from None

    if raw.metric is not None and raw.metrics is not None:
        raise ConfigError("metrics", "both 'metric' and 'metrics' are set", "keep one: 'metric' for a single metric or 'metrics' for a list")
    if raw.metric is None and raw.metrics is None:
        raise ConfigError("metric", "no metric given", "add 'metric: {name, config}' or 'metrics: [...]'")
    if raw.metrics is not None and len(raw.metrics) == 0:
        raise ConfigError("metrics", "the list is empty", "add at least one metric")

    tname = TECHNIQUES.canonical(raw.technique.name)
    if tname is None:
        raise ConfigError("technique.name", f"unknown technique {raw.technique.name!r}", _did_you_mean(TECHNIQUES, raw.technique.name))
    tcls = TECHNIQUES.get(tname)
    try:
        tconf = tcls.Config.model_validate(raw.technique.config)
    except ValidationError as exc:
        raise validation_to_config_error(exc, "technique.config", tcls.Config) from None

    specs = [("metric", raw.metric)] if raw.metric is not None else [(f"metrics[{i}]", m) for i, m in enumerate(raw.metrics or [])]
    resolved: list[ResolvedMetric] = []
    for path, spec in specs:
        mname = METRICS.canonical(spec.name)
        if mname is None:
            raise ConfigError(f"{path}.name", f"unknown metric {spec.name!r}", _did_you_mean(METRICS, spec.name))
        mcls = METRICS.get(mname)
        try:
            mconf = mcls.Config.model_validate(spec.config)
        except ValidationError as exc:
            raise validation_to_config_error(exc, f"{path}.config", mcls.Config) from None
        from erasekit.metrics.protocols import apply_protocol

        mconf = apply_protocol(mcls, mconf, f"{path}.config")
        resolved.append(ResolvedMetric(path=path, name=mname, key=mname, cls=mcls, config=mconf))

    counts: dict[str, int] = {}
    for m in resolved:
        counts[m.name] = counts.get(m.name, 0) + 1
        if counts[m.name] > 1:
            m.key = f"{m.name}#{counts[m.name]}"

    run = ResolvedRun(raw=raw, technique_name=tname, technique_cls=tcls, technique_config=tconf, metrics=resolved)
    tcls.check_config(tconf, "technique.config")
    for m in resolved:
        m.cls.check_config(m.config, run, f"{m.path}.config")
    return run


def _did_you_mean(reg: Any, name: str) -> str:
    s = reg.suggest(name)
    known = ", ".join(reg.names())
    return (f"did you mean '{s}'? " if s else "") + f"known {reg.kind}s: {known}"


def primary_concept(run: ResolvedRun) -> str | None:
    c = run.concepts()
    return c[0] if c else None
