"""Two test metrics for end-to-end generation tests through `erasekit run`.

They declare image requests like real metrics (sharing half their prompts) and score
the real images they are handed (mean pixel), writing one record per image. Used by
the in-process tests and by ``support/e2e_cli.py`` (the CLI in a subprocess that can be killed).
"""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.generation.request import ImageRequest
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.registry import METRICS, load_builtins

PROMPTS = [f"a {c} {s}" for s in ("circle", "square", "cat", "dog") for c in ("red", "green")]


class SharedConfig(MetricConfig):
    n: int = Field(6, ge=1, description="number of requests")
    offset: int = Field(0, ge=0, description="index of the first request (metrics overlap when offsets are close)")
    label: str = Field("x", description="a field that changes no image")


class _MeanPixel(Metric):
    Config = SharedConfig

    def requests(self):
        return [ImageRequest(PROMPTS[i % len(PROMPTS)], seed=i) for i in range(self.config.offset, self.config.offset + self.config.n)]

    def compute(self, images):
        import numpy as np

        vals = [float(np.asarray(im.image, dtype=np.float64).mean()) for im in images]
        records = [image_record(im, mean=v) for im, v in zip(images, vals, strict=True)]
        return MetricResult(value=sum(vals) / len(vals), details={"n": len(vals)}, records=records)


NAMES = ("t_gen_a", "t_gen_b")


def register() -> None:
    load_builtins()
    for name in NAMES:
        if METRICS.canonical(name) is None:
            METRICS.register(name)(type(f"M_{name}", (_MeanPixel,), {}))


def unregister() -> None:
    for name in NAMES:
        if METRICS.canonical(name) is not None:
            METRICS.unregister(name)
