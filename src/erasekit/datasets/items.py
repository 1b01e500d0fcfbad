"""Plain records the loaders return (no pandas, no torch: metrics stay simple)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PromptItem:
    """One prompt row.

    ``seed`` / ``guidance_scale``: the row's own values when the file has them
    (I2P's ``sd_seed`` / ``sd_guidance_scale``), else None — the metric decides
    (run seed, technique guidance). ``categories``: lower-cased tags (I2P
    categories, toy concepts). ``meta``: the other columns and the source row.
    """

    prompt: str
    seed: int | None = None
    guidance_scale: float | None = None
    categories: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TifaQuestion:
    """One TIFA v1.0 multiple-choice question about a caption."""

    question: str
    choices: tuple[str, ...]
    answer: str
    element_type: str = ""
    element: str = ""


@dataclass
class TifaItem:
    """A caption with its questions (TIFA scores are per-caption accuracies, averaged)."""

    id: str
    caption: str
    questions: list[TifaQuestion]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReferenceImages:
    """A reference image set for FID/KID, loaded lazily.

    ``key`` identifies the set (file names + sizes, or the toy recipe) so the FID
    metric can cache the reference statistics. Either ``paths`` (a folder) or an
    in-memory ``arrays`` (uint8 NHWC, the toy set) backs it.
    """

    key: str
    source: str
    paths: list[Path] | None = None
    arrays: Any = None

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.arrays)

    def image(self, i: int) -> Any:
        """Image ``i`` as an RGB PIL image."""
        from PIL import Image

        if self.paths is not None:
            with Image.open(self.paths[i]) as im:
                return im.convert("RGB")
        return Image.fromarray(self.arrays[i], "RGB")

    def iter_batches(self, batch_size: int = 64) -> Iterator[list[Any]]:
        """RGB PIL images in order, ``batch_size`` at a time (never the whole set in memory)."""
        for i in range(0, len(self), batch_size):
            yield [self.image(j) for j in range(i, min(i + batch_size, len(self)))]

    def images(self) -> list[Any]:
        return [self.image(i) for i in range(len(self))]


def files_key(paths: list[Path], prefix: str) -> str:
    """Identity of a file set: names + sizes (cheap, stable across copies of the folder)."""
    h = hashlib.sha256(prefix.encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]
