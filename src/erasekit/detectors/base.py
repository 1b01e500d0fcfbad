"""The detector interface: images in, per-image scores and a boolean decision out.

Every metric judges images through this one interface so that thresholds and
class sets are explicit, recorded per image and shared between metrics.

Verdicts on generated images are remembered per image (:meth:`Detector.detect_cached`), so
two metrics judging the same image with the same rule run the model once, and a run can judge
images *while later ones are generated* (:meth:`Detector.prefetch`). Why the fixed chunks:
a network's per-image output depends on the batch size it runs in (last bits, as for the
UNet), but not on the other images in the batch; running every chunk at exactly
:attr:`Detector.memo_chunk` images (the last one padded with copies) makes each verdict a
function of the image alone, so it is the same whether it was computed early, late, or by
another metric.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Detection:
    """One image's verdict: ``flagged`` (concept present), the deciding ``score``,
    and every raw score the detector produced (recorded in records.jsonl)."""

    flagged: bool
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    label: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "score": self.score, "label": self.label, "scores": self.scores}


class Detector(ABC):
    """Base class: batched concept detection with a documented decision rule."""

    name: str = ""

    @abstractmethod
    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        """Decide, per PIL image, whether ``concept`` is present."""

    def protocol(self) -> dict[str, Any]:
        """Model ids, thresholds and class sets: copied into every metric's details."""
        return {"detector": self.name}

    # ------------------------------------------------------------------ remembered verdicts
    @property
    def memo_chunk(self) -> int:
        """Images per model call for remembered verdicts: the detector's own batch size."""
        return max(1, int(getattr(self, "batch_size", 16) or 16))

    def _memo(self) -> tuple[dict[tuple[str, str, Any], Detection], dict[tuple[str, str], list[Any]], threading.Lock]:
        if "_memo_state" not in self.__dict__:
            self.__dict__["_memo_state"] = ({}, {}, threading.Lock())
        return self.__dict__["_memo_state"]

    def _rule(self) -> str:
        # The decision identity. Detectors derived from one another (other thresholds, captions) share
        # the memo dictionary through copy.copy, so every entry is keyed by the protocol *and* every
        # plain public attribute (threshold, captions, caption mode, preset name …): a parameter that
        # changes a verdict but not the recorded protocol still keeps verdicts apart.
        params = {k: v for k, v in sorted(vars(self).items())
                  if not k.startswith("_") and isinstance(v, (str, int, float, bool, tuple, list, type(None)))}
        return json.dumps({"protocol": self.protocol(), "params": params}, sort_keys=True, default=str)

    def _run_chunks(self, images: list[Any], concept: str, rule: str) -> None:
        from erasekit.detectors._images import to_pil_rgb

        done, _, _ = self._memo()
        n = self.memo_chunk
        stats = self.__dict__.setdefault("_memo_stats", {"images": 0, "padded": 0, "seconds": 0.0})
        t0 = time.perf_counter()
        for i in range(0, len(images), n):
            part = images[i : i + n]
            padded = part + [part[-1]] * (n - len(part))
            dets = self.detect([to_pil_rgb(im) for im in padded], concept)
            if len(dets) != n:
                raise RuntimeError(f"{self.name} returned {len(dets)} verdicts for {n} images")
            for im, det in zip(part, dets, strict=False):
                done[(rule, concept, _ident(im))] = det
            stats["images"] += len(part)
            stats["padded"] += n - len(part)
        stats["seconds"] += time.perf_counter() - t0

    def throughput(self) -> dict[str, float]:
        """Images judged through :meth:`detect_cached` / :meth:`prefetch`, the model time they took
        (padding included) and images/s."""
        st = self.__dict__.get("_memo_stats") or {"images": 0, "padded": 0, "seconds": 0.0}
        ips = st["images"] / st["seconds"] if st["seconds"] > 0 else 0.0
        return {"images": int(st["images"]), "padded": int(st["padded"]), "seconds": round(st["seconds"], 3),
                "images_per_s": round(ips, 2)}

    def detect_cached(self, images: Sequence[Any], concept: str) -> list[Detection]:
        """:meth:`detect` for generated images (objects with a cache ``key``), each verdict computed once.

        Images without a key (plain PIL images, reference sets) are judged directly by :meth:`detect`.
        """
        if not images or any(getattr(im, "key", None) is None for im in images):
            return self.detect(list(images), concept)
        rule = self._rule()
        done, pending, lock = self._memo()
        with lock:
            seen: dict[str, Any] = {}
            for im in [*pending.pop((rule, concept), []), *images]:
                if (rule, concept, _ident(im)) not in done:
                    seen.setdefault(_ident(im), im)
            self._run_chunks(list(seen.values()), concept, rule)
            return [done[(rule, concept, _ident(im))] for im in images]

    def prefetch(self, images: Sequence[Any], concept: str) -> int:
        """Judge generated images ahead of :meth:`detect_cached`, in full chunks only (the rest waits
        for the next call or for :meth:`detect_cached`). Returns how many were judged now."""
        rule = self._rule()
        done, pending, lock = self._memo()
        with lock:
            queue = pending.setdefault((rule, concept), [])
            known = {_ident(im) for im in queue}
            for im in images:
                if getattr(im, "key", None) is not None and (rule, concept, _ident(im)) not in done and _ident(im) not in known:
                    queue.append(im)
                    known.add(_ident(im))
            n = self.memo_chunk
            full = len(queue) // n * n
            ready, queue[:] = queue[:full], queue[full:]
            self._run_chunks(ready, concept, rule)
            return full


def _ident(image: Any) -> tuple[str, str]:
    """A generated image's identity for remembered verdicts: its cache key (the content address) and
    where it lies (one key is one file in one cache; the path guards against keys reused elsewhere)."""
    return str(image.key), str(getattr(image, "path", ""))
