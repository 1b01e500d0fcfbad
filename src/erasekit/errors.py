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

    #: longest one_line(); with the CLI's "erasekit: config error: " prefix a line stays under 300
    MAX_LINE = 270

    def one_line(self) -> str:
        msg = f"{clip_text(self.path, 60)}: {clip_text(self.problem, 180)}"
        if self.fix:
            msg += f". Fix: {clip_text(self.fix, max(20, self.MAX_LINE - len(msg) - 8))}."
        return msg


def clip_text(text: str, limit: int) -> str:
    """One printable line of at most ``limit`` characters: control characters (NUL, newlines,
    escapes) are shown escaped, whitespace runs folded, the middle of a long text elided — an
    error message must never be a megabyte or carry a terminal escape sequence."""
    words = [w if len(w) <= 48 or "/" not in w else "..." + w[-40:] for w in str(text).split()]  # long paths: their tail
    s = " ".join(words)
    s = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)
    if len(s) > limit:
        keep = limit - 5
        s = s[: keep - keep // 3] + " ... " + s[len(s) - keep // 3 :]
    return s


class ModelNotFoundError(ErasekitError):
    """A model (base pipeline, CLIP, NudeNet, Inception …) is not available locally."""


class TechniqueError(ErasekitError):
    """Applying a technique failed (bad checkpoint, mismatched architecture …)."""
