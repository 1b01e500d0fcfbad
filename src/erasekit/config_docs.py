"""Human- and machine-readable descriptions of every component's config.

``erasekit list NAME`` (every key of a technique's or metric's pydantic Config with its type,
default and description, plus a metric's declared direction, group, presets and example) and
``erasekit schema`` (the JSON Schema of a whole run config, for editors and CI linting) are
both generated here from the registered classes, so documentation can never drift from the
models that validate configs.
"""

from __future__ import annotations

import sys


def declared_meaning(cls: type) -> tuple[bool | None, str | None]:
    """A metric class's declared direction and group (None where it declares none)."""
    hib = getattr(cls, "higher_is_better", None)
    group = getattr(cls, "group", None)
    return (hib if isinstance(hib, bool) else None), (str(group) if group else None)


def direction_text(hib: bool | None, short: bool = False) -> str:
    from erasekit.report.schema import direction_label

    return direction_label(hib, short=short)


def _metric_presets(cls: type) -> list[tuple[str, str]]:
    """(preset, description) a metric accepts: its declared protocols (``Metric.protocols``;
    the NudeNet class set a protocol uses is its ``nudenet_preset`` setting)."""
    own = getattr(cls, "presets", None)
    default = getattr(cls, "default_protocol", None)
    if not isinstance(own, dict):
        return []
    return [(str(k), ("(default) " if k == default else "") + str(v)) for k, v in own.items()]


def all_presets() -> list[tuple[str, str, str]]:
    """(metric, preset, description) for every named protocol the metrics accept, read from
    the metric classes (``presets``, derived from their protocols)."""
    from erasekit.registry import METRICS

    return [(e.name, name, desc) for e in METRICS.entries() for name, desc in _metric_presets(e.obj)]


def _type_name(ann: object) -> str:
    """A readable type: ``int``, ``str | None``, ``list[str] | None``, ``auto|clip`` for a Literal."""
    import types
    import typing

    if ann is None or ann is type(None):
        return "None"
    origin, targs = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_name(targs[0])
    if origin is typing.Literal:
        return "|".join(str(a) for a in targs)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in targs)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        return f"{name}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in targs)}]" if targs else name
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _nested_model(ann: object) -> type | None:
    """The pydantic model a field holds (``attack: AttackSettings``, also ``AttackSettings | None``)."""
    import typing

    from pydantic import BaseModel

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if typing.get_origin(ann) is typing.Literal:
        return None
    models = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _default_text(field: object) -> str:
    import json

    from pydantic import BaseModel

    if field.is_required():  # type: ignore[attr-defined]
        return "(required)"
    factory = getattr(field, "default_factory", None)
    try:
        value = factory() if factory is not None else field.default  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a factory that needs arguments
        return "(computed)"
    if isinstance(value, BaseModel):
        return "(block, keys below)"
    if value is None:
        return "None"
    if isinstance(value, str):
        return value if value.strip() == value and value else json.dumps(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _config_rows(model: type, prefix: str = "", depth: int = 0) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for name, f in model.model_fields.items():  # type: ignore[attr-defined]
        desc = " ".join((f.description or "").split())
        rows.append(("  " * depth + prefix + name, _type_name(f.annotation), _default_text(f), desc))
        nested = _nested_model(f.annotation)
        if nested is not None and depth < 4:
            rows += _config_rows(nested, prefix + name + ".", depth + 1)
    return rows


def list_one(name: str) -> int:
    import json

    from erasekit.registry import METRICS, TECHNIQUES

    kind, reg = None, None
    for k, r in (("technique", TECHNIQUES), ("metric", METRICS)):
        if r.canonical(name) is not None:
            kind, reg = k, r
            break
    if reg is None or kind is None:
        close = [s for s in (TECHNIQUES.suggest(name), METRICS.suggest(name)) if s]
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"erasekit: error: no technique or metric called {name!r}{hint} (`erasekit list` shows every name)", file=sys.stderr)
        return 2
    key = reg.canonical(name)
    entry = next(e for e in reg.entries() if e.name == key)
    cls = entry.obj
    alias = f" (alias: {', '.join(entry.aliases)})" if entry.aliases else ""
    print(f"{kind} {entry.name}{alias}: {entry.description}")
    families = getattr(cls, "families", None)
    attack = getattr(cls, "attack_name", "")
    if kind == "metric" and attack:
        from erasekit.registry import ATTACKS

        families = ATTACKS.get(attack).families
    if families:
        print(f"  model families: {', '.join(families)}" + (f" (its attack, {attack})" if attack else ""))
    if kind == "metric":
        hib, group = declared_meaning(cls)
        print(f"  direction: {direction_text(hib)}")
        print(f"  group:     {group or 'not declared'}")
        try:
            bench = [f"{s.name} ({s.group}, {direction_text(s.higher_is_better, short=True)}, from {s.source})"
                     for s in cls.benchscore_entries()]
            print(f"  benchscore: {', '.join(bench) if bench else 'not counted'}")
        except Exception:  # noqa: BLE001 - a metric without the declared attributes
            pass
    config_cls = getattr(cls, "Config", None)
    block = "technique.config" if kind == "technique" else "metric.config / metrics[i].config"
    if config_cls is None or not hasattr(config_cls, "model_fields"):
        print(f"config keys ({block}): none declared")
    else:
        rows = _config_rows(config_cls)
        print(f"config keys ({block}):")
        w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("key", "type", "default"))]
        w = [min(x, 40) for x in w]
        print(f"  {'key':<{w[0]}}  {'type':<{w[1]}}  {'default':<{w[2]}}  description")
        for r in rows:
            print(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip())
        aliases = getattr(config_cls, "all_key_aliases", None)
        aliases = aliases() if callable(aliases) else {}
        if aliases:
            print("  also accepted: " + ", ".join(f"{a} (= {c})" for a, c in sorted(aliases.items())))
    if kind == "metric":
        presets = _metric_presets(cls)
        if presets:
            print("presets (config key 'preset'):")
            for pname, desc in presets:
                print(f"  {pname:<16} {desc}")
        example = getattr(cls, "example", None)
        if isinstance(example, dict) and example:
            print("example:")
            print("  " + json.dumps({"name": entry.name, "config": example}, default=str))
    return 0


def _alias_aware_schema_class() -> type:
    from pydantic.json_schema import GenerateJsonSchema

    class AliasAwareSchema(GenerateJsonSchema):
        """Also accepts a config model's ``key_aliases`` (old/foreign key names the loader renames)."""

        def model_schema(self, schema):  # noqa: ANN001, ANN202 - pydantic's hook signature
            out = super().model_schema(schema)
            get = getattr(schema.get("cls"), "all_key_aliases", None)
            aliases = get() if callable(get) else {}
            props = out.get("properties")
            if aliases and isinstance(props, dict):
                for alias, canon in aliases.items():
                    props.setdefault(alias, {"description": f"another name for '{canon}'"})
            return out

    return AliasAwareSchema


def config_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a run config: RunConfig's keys, with ``technique`` one of
    the registered techniques ``{name, config}`` and ``metric`` / ``metrics`` one of the
    registered metrics, each ``config`` the component's own pydantic Config."""
    import typing
    from typing import Annotated, Literal, Optional, Union

    from pydantic import ConfigDict, Field, create_model

    from erasekit.config import RunConfig
    from erasekit.registry import METRICS, TECHNIQUES, load_builtins

    load_builtins()

    def choices(reg: typing.Any, kind: str) -> typing.Any:
        models = []
        for e in reg.entries():
            cfg = getattr(e.obj, "Config", None)
            if cfg is None or not hasattr(cfg, "model_json_schema"):
                continue
            names = (e.name, *e.aliases)
            models.append(create_model(
                f"{kind}_{e.name}".replace("-", "_"),
                __config__=ConfigDict(extra="forbid", title=f"{kind} {e.name}"),
                __doc__=e.description or None,
                name=(Literal[names], Field(description=f"the {kind}")),  # type: ignore[valid-type]
                config=(cfg, Field(default_factory=dict, description=f"{e.name}'s config (`erasekit list {e.name}`)")),
            ))
        if len(models) == 1:
            return models[0]
        return Annotated[Union[tuple(models)], Field(discriminator="name")]  # noqa: UP007 - built from a runtime tuple

    technique = choices(TECHNIQUES, "technique")
    metric = choices(METRICS, "metric")
    top = create_model(
        "RunConfig",
        __base__=RunConfig,
        __doc__=RunConfig.__doc__,
        technique=(technique, Field(description="the technique to apply: {name, config}")),
        metric=(Optional[metric], Field(None, description="one metric: {name, config} (or use metrics)")),  # noqa: UP045
        metrics=(Optional[list[metric]], Field(None, description="several metrics, each {name, config}")),  # noqa: UP045
    )
    schema = top.model_json_schema(schema_generator=_alias_aware_schema_class())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
