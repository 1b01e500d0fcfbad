"""Judging images while later ones are generated: the runner's scoring thread (``overlap: true``).

The engine reports each committed batch (:class:`erasekit.generation.engine.Committed`, with
its PIL images); :class:`PrefetchScorer` hands it to every metric that asked for those images
and implements :meth:`~erasekit.metrics.base.Metric.prefetch`, on one thread. Verdicts land in
the detectors' memory (:meth:`erasekit.detectors.base.Detector.prefetch`), so ``compute`` later
finds them and gives the same numbers as without overlap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from erasekit.generation.request import GeneratedImage, ImageRequest
from erasekit.metrics.base import Metric

log = logging.getLogger("erasekit")

#: Judge committed batches on a scoring thread while the next batch is generated only when generation
#: runs on an accelerator. On a CPU-only machine the judge's torch/onnxruntime thread team competes
#: with the UNet's for the same cores (measured on 2 cores: a toy asr_custom run took 1.8x longer),
#: so there only the PNG writes overlap. Tests flip it to exercise the scoring path on a CPU.
SCORE_BESIDE_GENERATION_ON_CPU = False


def judges_beside_generation(overlap: bool, device_type: str) -> bool:
    """Whether a run judges committed batches on the scoring thread (see the constant above)."""
    return bool(overlap) and (device_type != "cpu" or SCORE_BESIDE_GENERATION_ON_CPU)


class PrefetchScorer:
    """Runs metrics' :meth:`~erasekit.metrics.base.Metric.prefetch` on one thread while later
    batches are generated. At most ``MAX_WAITING`` jobs wait (generation then waits for the
    judge, so images held in memory stay bounded); a failing job is logged and forgotten, since
    ``compute`` judges whatever is missing."""

    MAX_WAITING = 4

    def __init__(self) -> None:
        self.pool: Any = None
        self.jobs: list[Any] = []
        self.seconds = 0.0

    def listener(self, metrics: dict[str, Metric], requests: dict[str, list[ImageRequest]], errors: dict[str, str],
                 key_of: Callable[[ImageRequest], str]) -> Callable[[list[Any]], None] | None:
        """The engine's ``on_batch`` for one model's metrics (None when none of them prefetches)."""
        hooks = {k: m for k, m in metrics.items() if k not in errors and type(m).prefetch is not Metric.prefetch}
        wanted: dict[str, list[str]] = {}
        for k in hooks:
            for r in requests.get(k, []):
                keys = wanted.setdefault(key_of(r), [])
                if k not in keys:
                    keys.append(k)
        if not wanted:
            return None
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="erasekit-score")

        def on_batch(done: list[Any]) -> None:
            by_metric: dict[str, list[GeneratedImage]] = {}
            for c in done:
                for k in wanted.get(c.key, ()):
                    by_metric.setdefault(k, []).append(GeneratedImage(request=c.request, key=c.key, path=c.path, reused=False,
                                                                      _image=c.image))
            for k, imgs in by_metric.items():
                self.jobs.append(self.pool.submit(self._run, hooks[k], imgs))
            while sum(not j.done() for j in self.jobs) > self.MAX_WAITING:
                next(j for j in self.jobs if not j.done()).result()
            self.jobs = [j for j in self.jobs if not j.done()]

        return on_batch

    def _run(self, metric: Metric, images: list[GeneratedImage]) -> None:
        t0 = time.perf_counter()
        try:
            metric.prefetch(images)
        except Exception:  # noqa: BLE001 - compute() judges what is missing and reports a real failure
            log.debug("prefetch for %s failed; compute will judge these images", type(metric).__name__, exc_info=True)
        self.seconds += time.perf_counter() - t0

    def wait(self) -> None:
        for j in self.jobs:
            j.result()
        self.jobs = []
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
