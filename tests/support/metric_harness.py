"""Helpers for the metric tests (asr_i2p, asr_custom, clip_score, fid, ua_ira, err, tifa, mma_diffusion).

(The untrained mini-CLIP folder is ``support.tiny_models.build_tiny_clip`` / the ``tiny_clip_dir`` fixture.)
- ``make_ctx``: a MetricContext for a validated run config (no pipeline: metrics never use it).
- ``serve``: turn a metric's requests into GeneratedImage objects backed by PNG files, the way
  the runner hands them over, with pixels chosen by the test (so the truth is known).
- ``ColourDetector``: a deterministic detector that judges by dominant colour, in batches of 32,
  for tests where the right answer must be known exactly (UA/IRA batch-index regression).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from erasekit.config import resolve_config
from erasekit.detectors.base import Detection, Detector
from erasekit.generation.request import GeneratedImage, ImageRequest
from erasekit.metrics.base import MetricContext

RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "grey": (128, 128, 128)}


def run_config(tmp: Path, metric: str, config: dict[str, Any], model_id: str = "toy", technique: str = "none",
               tconfig: dict[str, Any] | None = None) -> Any:
    data = {
        "output_dir": str(tmp / "out"),
        "cache_dir": str(tmp / "cache"),
        "technique": {"name": technique, "config": {"model_id": model_id, "device": "cpu", **(tconfig or {})}},
        "metric": {"name": metric, "config": {"device": "cpu", **config}},
    }
    return resolve_config(data)


def make_ctx(run: Any, detectors: Any = None, cache_dir: Path | None = None) -> MetricContext:
    return MetricContext(run=run, pipe=None, model_fingerprint="test-model", detectors=detectors,
                         cache_dir=cache_dir or run.cache_dir, variant="erased")


def metric_for(run: Any, detectors: Any = None) -> Any:
    m = run.metrics[0]
    return m.cls.create(m.config, make_ctx(run, detectors), f"{m.path}.config")


def serve(requests: list[ImageRequest], folder: Path, pixels: Callable[[int, ImageRequest], np.ndarray]) -> list[GeneratedImage]:
    """GeneratedImage objects for ``requests`` whose PNGs hold ``pixels(i, request)`` (HxWx3 uint8)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, req in enumerate(requests):
        key = hashlib.sha256(f"{req.prompt}|{req.seed}|{req.guidance_scale}|{i}".encode()).hexdigest()[:16]
        path = folder / f"{key}.png"
        Image.fromarray(np.ascontiguousarray(pixels(i, req)), "RGB").save(path)
        out.append(GeneratedImage(request=req, key=key, path=path, reused=False))
    return out


def solid(colour: str, size: int = 32) -> np.ndarray:
    return np.tile(np.array(RGB[colour], dtype=np.uint8), (size, size, 1))


class ColourDetector(Detector):
    """Flags an image when its mean colour is closest to ``concept`` (a colour name).

    Processes images in batches of ``batch_size`` (default 32) and records the batch
    boundaries it saw, so tests can show a batch split happened where the UA/IRA
    batch-index bug would bite.
    """

    name = "colour_test"

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self.batches: list[tuple[str, int]] = []

    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        out: list[Detection] = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            self.batches.append((concept, len(chunk)))
            for im in chunk:
                mean = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(0)
                dists = {c: float(np.linalg.norm(mean - np.array(v))) for c, v in RGB.items()}
                best = min(dists, key=dists.get)
                out.append(Detection(flagged=best == concept, score=1.0 if best == concept else 0.0,
                                     scores={c: -d for c, d in dists.items()}, label=best))
        return out

    def protocol(self) -> dict[str, Any]:
        return {"detector": self.name, "rule": "nearest mean colour", "batch_size": self.batch_size}


class FixedPool:
    """A DetectorPool stand-in that serves one given detector for every request (and logs the requests)."""

    def __init__(self, detector: Detector, device: str = "cpu") -> None:
        self.detector = detector
        self.device = device
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, name: str, **params: Any) -> Detector:
        self.calls.append((name, params))
        return self.detector


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


class RecordingPool:
    """A DetectorPool stand-in: hands out one detector and records every ``get(name, **params)``."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, name: str, **params: Any) -> Any:
        self.calls.append((name, params))
        return self.detector


def toy_text_path(folder: Path) -> Any:
    """A pipeline stand-in holding a real tokenizer (the toy BPE) and a real random CLIPTextModel."""
    from types import SimpleNamespace

    import torch
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import text_config
    from erasekit.toyworld.tokenizer import build_tokenizer_files, load_tokenizer

    tok = load_tokenizer(build_tokenizer_files(Path(folder) / "tok"))
    torch.manual_seed(0)
    te = CLIPTextModel(text_config(len(tok), tok.bos_token_id, tok.eos_token_id)).eval()
    return SimpleNamespace(text_encoder=te, tokenizer=tok)
