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
from erasekit.config_docs import all_presets, config_json_schema, declared_meaning, direction_text, list_one
from erasekit.errors import ConfigError, ErasekitError, clip_text

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
    v.add_argument("--portable", action="store_true",
                   help="skip this machine's checks (devices exist, output/cache folders writable): "
                        "for a config meant to run elsewhere, e.g. device: cuda checked on a laptop")
    v.add_argument("--no-assets", action="store_true",
                   help="skip checking that every model, dataset and weights file the metrics read is available offline")

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
    c.add_argument("--allow-mismatch", action="store_true",
                   help="show runs whose protocols differ for a metric (preset, N, judge, threshold, sampler or base "
                        "model) with a warning column, instead of refusing (exit 2)")
    c.add_argument("--no-base", action="store_true",
                   help="leave out the base-model rows that compare_to_base runs add (one per distinct base model)")
    return p


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _fail_config(err: ConfigError) -> int:
    print(f"erasekit: config error: {err.one_line()}", file=sys.stderr)
    return 2


def cmd_validate(args: argparse.Namespace) -> int:
    from erasekit.config import load_config
    from erasekit.preflight import check_machine

    try:
        run = load_config(args.config)
    except ConfigError as err:
        return _fail_config(err)
    try:
        check_machine(run, portable=args.portable, assets=not args.no_assets)
    except ConfigError as err:
        return _fail_config(err)
    concepts = run.concepts()
    names = ", ".join(m.key for m in run.metrics)
    print(f"OK {args.config}: technique {run.technique_name}"
          + (f" (erase: {', '.join(concepts)})" if concepts else "")
          + f"; metrics: {names}; run_id {run.run_id()}"
          + (" (portable: devices and folder permissions of this machine not checked)" if args.portable else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from erasekit.config import load_config

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:  # the terminal shows warnings; the run's log file gets everything
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        run = load_config(args.config)
    except ConfigError as err:
        return _fail_config(err)
    from erasekit.runner import run as run_fn

    console = _console()
    show = not args.no_progress and sys.stderr.isatty()
    _sigterm_as_interrupt()
    from erasekit.preflight import check_machine

    try:
        check_machine(run)  # before the log file: output_dir itself may be the problem
    except ConfigError as err:
        return _fail_config(err)
    handler = _log_to_file(run.output_dir)
    where = f" (traceback in {handler.baseFilename})" if handler else ""
    try:
        outcome = run_fn(run, show_progress=show, console=console)
    except ConfigError as err:
        return _fail_config(err)
    except ErasekitError as err:
        print(f"erasekit: error: {clip_text(str(err), 400)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("erasekit: interrupted; finished results are kept (rerun to resume from the cache)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - an OS error (disk full …) or a bug: one line, the traceback to the log
        logging.getLogger("erasekit").error("run failed", exc_info=True)
        msg = clip_text(f"{exc.__class__.__name__}: {exc}", 240)
        print(f"erasekit: error: {msg}; finished results are kept in {run.output_dir}{where}", file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            logging.getLogger("erasekit").removeHandler(handler)
            handler.close()
    _print_summary(outcome.report, console)
    console.print(f"report: {outcome.output_dir / 'report.json'}", markup=False, soft_wrap=True)
    html_path = outcome.output_dir / "report.html"
    if html_path.is_file():
        console.print(f"html: {html_path}", markup=False, soft_wrap=True)
    return outcome.exit_code


def _log_to_file(output_dir: Path) -> logging.FileHandler | None:
    """Debug log of this run in ``output_dir/run.log`` (appended; tracebacks go here, not to
    the terminal). None when the folder cannot be written (the run then says why)."""
    path = Path(output_dir) / "run.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except (OSError, ValueError):
        return None
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("erasekit")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


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
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"erasekit run {report.get('run_id')}")
    has_base = any("base_value" in m for m in report["metrics"].values())
    t.add_column("metric")
    t.add_column("protocol")
    t.add_column("value", justify="right")
    if has_base:
        t.add_column("base", justify="right")
        t.add_column("delta", justify="right")
    t.add_column("status")

    def fmt(x):
        return "—" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))

    for key, m in report["metrics"].items():
        row = [key, escape(str((m.get("protocol") or {}).get("label") or "—")), fmt(m.get("value"))]
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
        return list_one(args.name)
    for title, reg in (("techniques", TECHNIQUES), ("metrics", METRICS), ("detectors", DETECTORS)):
        print(f"{title}:")
        for e in reg.entries():
            alias = f" (alias: {', '.join(e.aliases)})" if e.aliases else ""
            meaning = ""
            if reg is METRICS:
                hib, group = declared_meaning(e.obj)
                meaning = f"{direction_text(hib, short=True)} {group or '?':<9} "
            print(f"  {e.name:<16} {meaning}{e.description}{alias}")
    print("presets:")
    for metric, name, desc in all_presets():
        print(f"  {metric + '/' + name:<28} {desc}")
    print("(↑ higher is better, ↓ lower is better; `erasekit list NAME` shows every config key of one)")
    return 0


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
    except BrokenPipeError:  # `erasekit list | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
