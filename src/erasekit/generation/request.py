"""What a metric asks for: an image request, and what it gets back.

Metrics never call the pipeline. They return ``ImageRequest`` objects; the runner
deduplicates them across metrics, serves what the cache has, generates the rest
and hands each metric its ``GeneratedImage`` list in request order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageRequest:
    """One image: prompt + seed (+ optional negative prompt and per-request guidance).

    ``guidance_scale`` overrides the technique's value for this image only (I2P rows
    carry their own). Two equal requests are one image.
    """

    prompt: str
    seed: int
    negative_prompt: str = ""
    guidance_scale: float | None = None


@dataclass(frozen=True)
class SamplerSettings:
    """Everything besides the request that determines the pixels."""

    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    scheduler: str = "DDIMScheduler"
    dtype: str = "float32"
    #: device *type* ("cpu", "cuda", "mps"): kernels differ, so pixels do; ranks on cuda:0..N share
    device: str = "cpu"
    #: images per pipeline call (every call is padded to it): measured to move single pixels by ±1
    #: grey level, so it is part of the key (0: not yet known; the generator fills it in)
    batch_size: int = 0
    #: torch's intra-op CPU threads when generating on the CPU (same reason; 0 on accelerators,
    #: whose kernels do not depend on it)
    cpu_threads: int = 0
    #: model family (:mod:`erasekit.models.families`): how prompts become conditioning
    family: str = "sd1"
    #: the UNet's memory layout ("channels_last" on CUDA): kernels differ, so pixels may
    memory_format: str = "contiguous"


@dataclass
class GeneratedImage:
    """An image served to a metric: from the cache or freshly generated."""

    request: ImageRequest
    key: str
    path: Path
    reused: bool
    _image: Any = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> Any:
        """The PIL image (RGB), loaded lazily from the cache."""
        if self._image is None:
            from PIL import Image

            with Image.open(self.path) as im:
                self._image = im.convert("RGB")
        return self._image
