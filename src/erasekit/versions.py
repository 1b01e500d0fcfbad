"""Library versions recorded in every report (numbers nobody can reproduce without them)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("erasekit", "torch", "diffusers", "transformers", "accelerate", "numpy", "nudenet", "torchmetrics"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
