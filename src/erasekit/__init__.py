"""erasekit: erase concepts from text-to-image diffusion models and measure what the erasure did.

The Python API is the CLI's, as functions (imports stay lazy, so ``import erasekit`` is cheap)::

    import erasekit

    run = erasekit.validate("examples/quickstart.yaml")   # ConfigError (one line) on a bad config
    outcome = erasekit.run(run)                            # or a path, or a dict in the config's shape
    report = erasekit.load_report(outcome.output_dir)      # typed report.json
    report.metrics["asr_custom"].value
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun, RunConfig
    from erasekit.report.schema import Report
    from erasekit.runner import RunOutcome

__all__ = ["__version__", "load_report", "run", "validate"]


def validate(config: str | Path | dict[str, Any] | RunConfig | ResolvedRun, *, portable: bool = False) -> ResolvedRun:
    """Validate a config (file path, dict, :class:`erasekit.config.RunConfig` model, or an already
    resolved run) completely, loading no model:
    its shape, every block, the compatibility rules, the files it names, and (unless ``portable``)
    this machine's devices, the model's availability offline and the output folders.
    Raises :class:`erasekit.errors.ConfigError`."""
    from erasekit.config import ResolvedRun, RunConfig, load_config, resolve_config
    from erasekit.preflight import check_machine

    if isinstance(config, ResolvedRun):
        resolved = config
    elif isinstance(config, RunConfig):
        resolved = resolve_config(config.model_dump(exclude_none=True))
    elif isinstance(config, dict):
        resolved = resolve_config(config)
    else:
        resolved = load_config(config)
    check_machine(resolved, portable=portable)
    return resolved


def run(config: str | Path | dict[str, Any] | RunConfig | ResolvedRun, *, show_progress: bool = False) -> RunOutcome:
    """Validate and execute a run; returns the outcome (``report`` dict, ``exit_code``, ``output_dir``).
    A failing metric is recorded in the report (exit_code 1), a bad config raises ConfigError."""
    from erasekit.runner import run as run_pipeline

    return run_pipeline(validate(config), show_progress=show_progress)


def load_report(path: str | Path) -> Report:
    """A run's report.json (the run folder or the file) as a typed :class:`erasekit.report.schema.Report`."""
    from erasekit.report.schema import load_report as _load

    return _load(path)
