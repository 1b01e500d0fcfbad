"""Command line: ``erasekit run | validate | list | report | compare``.

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

Writes output_dir/report.json, records.jsonl, metrics/*.json and report.html.
Exit codes: 0 ok, 1 technique/metric failed (finished results kept), 2 bad config.
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

    sub.add_parser("list", help="list techniques, metrics, detectors and presets")

    rp = sub.add_parser("report", help="rebuild report.html of a finished run")
    rp.add_argument("run_dir", help="a run's output_dir")

    c = sub.add_parser("compare", help="table of several runs with BenchScore")
    c.add_argument("run_dirs", nargs="+", help="runs' output_dirs")
    c.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
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
    console.print(f"report: {outcome.output_dir / 'report.json'}")
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
    for title, reg in (("techniques", TECHNIQUES), ("metrics", METRICS), ("detectors", DETECTORS)):
        print(f"{title}:")
        for e in reg.entries():
            alias = f" (alias: {', '.join(e.aliases)})" if e.aliases else ""
            print(f"  {e.name:<16} {e.description}{alias}")
    print("presets:")
    for metric, name, desc in _presets():
        print(f"  {metric + '/' + name:<28} {desc}")
    return 0


def _presets() -> list[tuple[str, str, str]]:
    """(metric, preset, description) for every named protocol the metrics accept."""
    out: list[tuple[str, str, str]] = []
    try:
        from erasekit.detectors.nudenet import NUDENET_PRESETS  # type: ignore[attr-defined]

        for name, p in NUDENET_PRESETS.items():
            desc = p.get("description") if isinstance(p, dict) else getattr(p, "description", "")
            out.append(("asr_i2p", name, str(desc or "")))
    except ImportError:
        pass
    out.append(("clip_score", "mace", "ViT-B/32, 100*cos without the clamp at 0 (MACE paper)"))
    out.append(("clip_score", "standard", "torchmetrics CLIPScore: max(100*cos, 0), ViT-L/14"))
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from erasekit.report.html import write_html  # type: ignore[import-not-found]

    path = write_html(Path(args.run_dir))
    print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from erasekit.report.compare import main as compare_main  # type: ignore[import-not-found]

    return compare_main(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "report": cmd_report, "compare": cmd_compare}
    try:
        return handlers[args.command](args)
    except ConfigError as err:
        return _fail_config(err)
    except ErasekitError as err:
        print(f"erasekit: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
