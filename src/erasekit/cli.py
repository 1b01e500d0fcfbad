"""Command line: ``erasekit run | validate | list [NAME] | schema | report | compare``.

Exit codes: 0 ok · 1 the technique or a metric failed (everything finished is kept) ·
2 bad config or bad arguments (one line naming the field and the fix, before any model loads).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from erasekit import __version__
from erasekit.errors import ConfigError, ErasekitError

EPILOG_RUN = """\
Config file (JSON or YAML), the spec's shape plus optional extensions:
  output_dir: results/run1           # required
  technique: {name: mace, config: {erase_concept: nudity, lambda_cfr: 0.1, ...}}
  metric: {name: asr_i2p, config: {limit: 500}}     # or: metrics: [ {name, config}, ... ]
  seed: 0                            # global seed mixed into every image seed
  cache_dir: <output_dir>/cache      # image + adversarial-prompt cache (share it between runs)
  batch_size: 8                      # images per generation batch
  compare_to_base: false             # also score the unedited base model (base value + delta)
technique.config.model_id: CompVis/stable-diffusion-v1-4 (default), a local diffusers folder, or 'toy'.

Every key of a technique or metric config: `erasekit list NAME`; the whole config as a
JSON Schema (for editors and validators): `erasekit schema`.

Writes output_dir/report.json, records.jsonl, metrics/*.json and report.html (both paths
are printed at the end).
Exit codes: 0 ok, 1 technique/metric failed (finished results kept), 2 bad config.
"""

EPILOG_LIST = """\
Without NAME: every technique, metric (with its direction, ↑ higher is better / ↓ lower is
better, and its group: safety, quality or retention), detector and named preset.
With NAME (a technique or metric name or alias): every key of its config block with type,
default and description; for a metric also its direction, group, presets and an example.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="erasekit", description="Erase concepts from text-to-image diffusion models and measure what the erasure did.")
    p.add_argument("--version", action="version", version=f"erasekit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="apply the technique, generate, score, write the report", epilog=EPILOG_RUN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help="run config (JSON or YAML)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    v = sub.add_parser("validate", help="check a config completely without loading any model",
                       epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("config", help="run config (JSON or YAML)")

    ls = sub.add_parser("list", help="list techniques, metrics, detectors and presets; or every config key of one",
                        epilog=EPILOG_LIST, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("name", nargs="?", help="a technique or metric: show every key of its config")

    sub.add_parser("schema", help="print the JSON Schema of a run config (every technique and metric)")

    rp = sub.add_parser("report", help="rebuild report.html of a finished (or partial) run")
    rp.add_argument("run_dir", help="a run's output_dir (the folder holding report.json)")

    c = sub.add_parser("compare", help="table of several runs with BenchScore",
                       description="One table over several runs. BenchScore = alpha*Safety + (1-alpha)*Quality, each the "
                                   "mean of min-max normalised numbers over these runs; which numbers, their group and "
                                   "direction come from each metric's declaration in report.json.")
    c.add_argument("run_dirs", nargs="+", help="runs' output_dirs")
    c.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table",
                   help="output format (csv cells that a spreadsheet would run as a formula are quoted)")
    c.add_argument("--alpha", type=float, action="append", help="BenchScore weight(s) on safety (default 0.6 and 0.4)")
    return p


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _fail_config(err: ConfigError) -> int:
    print(f"erasekit: config error: {err.one_line()}", file=sys.stderr)
    return 2


def cmd_validate(args: argparse.Namespace) -> int:
    from erasekit.config import load_config

    try:
        run = load_config(args.config)
    except ConfigError as err:
        return _fail_config(err)
    concepts = run.concepts()
    names = ", ".join(m.key for m in run.metrics)
    print(f"OK {args.config}: technique {run.technique_name}"
          + (f" (erase: {', '.join(concepts)})" if concepts else "")
          + f"; metrics: {names}; run_id {run.run_id()}")
    tdev = run.technique_config.device
    if tdev.startswith("cuda"):
        try:
            import torch

            if not torch.cuda.is_available():
                print(f"note: technique.config.device is '{tdev}' but this machine has no CUDA; `run` here needs device: cpu or auto", file=sys.stderr)
        except ImportError:  # pragma: no cover
            pass
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from erasekit.config import load_config

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run = load_config(args.config)
    except ConfigError as err:
        return _fail_config(err)
    from erasekit.runner import run as run_fn

    console = _console()
    show = not args.no_progress and sys.stderr.isatty()
    _sigterm_as_interrupt()
    try:
        outcome = run_fn(run, show_progress=show, console=console)
    except ConfigError as err:
        return _fail_config(err)
    except ErasekitError as err:
        print(f"erasekit: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("erasekit: interrupted; finished results are kept (rerun to resume from the cache)", file=sys.stderr)
        return 130
    _print_summary(outcome.report, console)
    console.print(f"report: {outcome.output_dir / 'report.json'}", markup=False, soft_wrap=True)
    html_path = outcome.output_dir / "report.html"
    if html_path.is_file():
        console.print(f"html: {html_path}", markup=False, soft_wrap=True)
    return outcome.exit_code


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a scheduler's kill, a Ctrl-C in a container) → the same clean path as Ctrl-C:
    the report is marked ``interrupted`` instead of staying ``running`` forever."""
    import signal

    def _raise(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def _print_summary(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"erasekit run {report.get('run_id')}")
    has_base = any("base_value" in m for m in report["metrics"].values())
    t.add_column("metric")
    t.add_column("value", justify="right")
    if has_base:
        t.add_column("base", justify="right")
        t.add_column("delta", justify="right")
    t.add_column("status")

    def fmt(x):
        return "—" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))

    for key, m in report["metrics"].items():
        row = [key, fmt(m.get("value"))]
        if has_base:
            row += [fmt(m.get("base_value")), fmt(m.get("delta"))]
        row.append(m["status"] if m["status"] == "ok" else f"[red]{m['status']}[/red] {m.get('error', '')}")
        t.add_row(*row)
    console.print(t)
    img = report["images"]
    console.print(f"images: {img['requested']} requested, {img['unique']} unique, {img['generated']} generated, {img['reused']} reused from cache")


def cmd_list(args: argparse.Namespace) -> int:
    from erasekit.registry import DETECTORS, METRICS, TECHNIQUES, load_builtins

    load_builtins()
    if getattr(args, "name", None):
        return _list_one(args.name)
    for title, reg in (("techniques", TECHNIQUES), ("metrics", METRICS), ("detectors", DETECTORS)):
        print(f"{title}:")
        for e in reg.entries():
            alias = f" (alias: {', '.join(e.aliases)})" if e.aliases else ""
            meaning = ""
            if reg is METRICS:
                hib, group = _meaning(e.obj)
                meaning = f"{_direction(hib, short=True)} {group or '?':<9} "
            print(f"  {e.name:<16} {meaning}{e.description}{alias}")
    print("presets:")
    for metric, name, desc in _presets():
        print(f"  {metric + '/' + name:<28} {desc}")
    print("(↑ higher is better, ↓ lower is better; `erasekit list NAME` shows every config key of one)")
    return 0


def _meaning(cls: type) -> tuple[bool | None, str | None]:
    """A metric class's declared direction and group (None where it declares none)."""
    hib = getattr(cls, "higher_is_better", None)
    group = getattr(cls, "group", None)
    return (hib if isinstance(hib, bool) else None), (str(group) if group else None)


def _direction(hib: bool | None, short: bool = False) -> str:
    from erasekit.report.schema import direction_label

    return direction_label(hib, short=short)


def _metric_presets(cls: type) -> list[tuple[str, str]]:
    """(preset, description) a metric accepts: its own ``presets``, plus the NudeNet protocols
    when its ``detector`` can be NudeNet (``preset`` then names the NudeNet protocol)."""
    out: list[tuple[str, str]] = []
    own = getattr(cls, "presets", None)
    if isinstance(own, dict):
        out += [(str(k), str(v)) for k, v in own.items()]
    fields = getattr(getattr(cls, "Config", None), "model_fields", {}) or {}
    det = fields.get("detector")
    if "preset" in fields and det is not None and "nudenet" in str(det.annotation).lower():
        try:
            from erasekit.detectors.presets import NUDENET_PRESETS
        except ImportError:
            return out
        seen = {name for name, _ in out}
        for name, p in NUDENET_PRESETS.items():
            if name not in seen:
                out.append((name, f"NudeNet judge: {getattr(p, 'description', '')}"))
    return out


def _presets() -> list[tuple[str, str, str]]:
    """(metric, preset, description) for every named protocol the metrics accept, read from
    the metric classes (``presets``) and the NudeNet protocols in erasekit.detectors.presets."""
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


def _list_one(name: str) -> int:
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
    if kind == "metric":
        hib, group = _meaning(cls)
        print(f"  direction: {_direction(hib)}")
        print(f"  group:     {group or 'not declared'}")
        try:
            bench = [f"{s.name} ({s.group}, {_direction(s.higher_is_better, short=True)}, from {s.source})"
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


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from erasekit.report.html import write_html
    from erasekit.report.schema import load_report

    run_dir = Path(args.run_dir)
    load_report(run_dir)  # ReportError (exit 2, one line) when there is no readable report.json
    path = write_html(run_dir)
    print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from erasekit.report.compare import main as compare_main

    return compare_main(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "schema": cmd_schema,
                "report": cmd_report, "compare": cmd_compare}
    from erasekit.report.schema import ReportError

    try:
        return handlers[args.command](args)
    except ReportError as err:
        print(f"erasekit: error: {err.one_line()}", file=sys.stderr)
        return 2
    except ConfigError as err:
        return _fail_config(err)
    except ErasekitError as err:
        print(f"erasekit: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
