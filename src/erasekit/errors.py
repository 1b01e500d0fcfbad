"""Exceptions with a contract: each one maps to an exit code and a one-line message.

Why a small hierarchy: the CLI must tell a bad config (exit 2, nothing loaded) from a
failure while running (exit 1, everything finished kept) without parsing messages.
"""

from __future__ import annotations


class ErasekitError(Exception):
    """Base class for errors erasekit reports to the user without a traceback."""


class ConfigError(ErasekitError):
    """A config problem found before any model loads. Exit code 2.

    ``path`` is the dotted location in the config (``metrics[2].config.limit``),
    ``fix`` says what to do about it. ``str(err)`` is the single line shown to users.
    """

    def __init__(self, path: str, problem: str, fix: str | None = None) -> None:
        self.path = path or "<config>"
        self.problem = problem.strip().rstrip(".")
        self.fix = (fix or "").strip().rstrip(".")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        msg = f"{self.path}: {self.problem}"
        if self.fix:
            msg += f". Fix: {self.fix}."
        return " ".join(msg.split())  # never more than one line


class ModelNotFoundError(ErasekitError):
    """A model (base pipeline, CLIP, NudeNet, Inception …) is not available locally."""


class TechniqueError(ErasekitError):
    """Applying a technique failed (bad checkpoint, mismatched architecture …)."""
