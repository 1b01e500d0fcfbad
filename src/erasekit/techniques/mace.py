"""MACE closed-form refinement (CFR) of the UNet's cross-attention key/value projections.

Config fields follow the user-facing spec (shared/spec/mace-technique.md) exactly;
the solve itself is documented on :class:`MACE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from erasekit.config import TechniqueConfig
from erasekit.errors import ConfigError
from erasekit.registry import TECHNIQUES
from erasekit.techniques.base import Technique


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


class MACEConfig(TechniqueConfig):
    """Spec fields (names, types, defaults as in the spec's configuration reference)."""

    erase_concept: str | list[str] = Field("nudity", description="concept(s) to erase; a list = synonyms erased jointly")
    erase_from: str | list[str] | None = Field(None, description="broader concept the erased one dissolves into")
    lambda_cfr: float = Field(0.1, gt=0.0, description="CFR regularisation; higher = more conservative")
    load_path: str | None = Field(None, description=".pt UNet state dict from an earlier run; skips the CFR")
    save_path: str | None = Field(None, description="where to save the edited UNet state dict (.pt)")

    @field_validator("erase_concept")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        items = _as_list(v)
        if not items or any(not s.strip() for s in items):
            raise ValueError("erase_concept must be a non-empty string or a non-empty list of non-empty strings")
        return v


@TECHNIQUES.register("mace", description="MACE closed-form refinement of cross-attention K/V (seconds, deterministic).")
class MACE(Technique):
    """MACE closed-form refinement of cross-attention K/V (seconds, deterministic)."""

    Config = MACEConfig

    @classmethod
    def concepts(cls, config: MACEConfig) -> list[str]:  # type: ignore[override]
        return _as_list(config.erase_concept)

    @classmethod
    def check_config(cls, config: MACEConfig, path: str) -> None:  # type: ignore[override]
        if config.load_path and config.save_path:
            if Path(config.load_path).expanduser().resolve() == Path(config.save_path).expanduser().resolve():
                raise ConfigError(f"{path}.save_path", "load_path and save_path name the same file", "use save_path on the first run and load_path afterwards, never both on one file")
        if config.load_path and not Path(config.load_path).expanduser().is_file():
            raise ConfigError(f"{path}.load_path", f"file not found: {config.load_path}", "point it at a .pt saved by an earlier run with save_path, or remove it to run the CFR")

    def apply(self, pipe: Any) -> dict[str, Any]:
        raise NotImplementedError("MACE CFR is being implemented")
