"""Concept-erasure techniques. Each is one module registering itself in ``TECHNIQUES``."""

from erasekit.techniques import mace, none  # noqa: F401  (import = registration)
from erasekit.techniques.base import Technique

__all__ = ["Technique"]
