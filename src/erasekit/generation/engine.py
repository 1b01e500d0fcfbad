"""The generation engine: deduplicate requests, reuse the cache, generate the rest in batches.

Guarantees (each one is tested in ``tests/generation``):

- **Every unique image is generated once.** Requests are deduplicated by cache key
  (not by object equality: a request whose explicit guidance equals the technique's
  is the same image as one without), and anything already cached is reused.
- **An image does not depend on batch size or order.** Each image has its own
  ``torch.Generator`` seeded with :func:`image_seed`; the initial latents are drawn
  per image. The UNet's float math is not bitwise batch-invariant (kernels differ per
  shape, ~1e-7), so after 8-bit quantisation a rare value flips by one grey level:
  measured on CPU, toy model, batch 1 vs 8: 116/128 PNGs byte-identical, max pixel
  difference 1, 7e-5 of values differ (``tests/generation/test_engine.py``).
- **Noise is drawn on the CPU**, whatever device the model runs on. Why: the same
  seed then gives the same starting latent on CPU, CUDA and MPS (CUDA generators
  produce a different stream), which is also what the common erasure evaluation
  scripts do (``torch.manual_seed(seed)`` → CPU generator). The cost (a few
  thousand normal samples per image) is negligible.
- **Kill-safe.** Every image is committed to the cache atomically as soon as it is
  written: a kill -9 loses at most the batch being generated and the one being written,
  and a restart regenerates exactly what is missing.
- **The accelerator does not wait for the CPU** (``overlap``, default on): PNG encoding,
  hashing and the atomic, fsync'd writes of batch *i* run on writer threads while batch
  *i + 1* is generated (at most one batch waits to be written, so memory stays bounded);
  ``on_batch`` hears of each batch once it is committed, so a caller can score it while the
  next one is drawn. The bytes are the same either way (PNG encoding is deterministic).
- **Batches share one pipe call**: requests are grouped by effective guidance scale
  (I2P rows carry their own), and prompts / negative prompts / generators are lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erasekit.generation.cache import ImageCache, key_payload
from erasekit.generation.request import GeneratedImage, ImageRequest, SamplerSettings
from erasekit.generation.sampling import sample

log = logging.getLogger(__name__)

_SEED_MASK = 2**63 - 1


def image_seed(run_seed: int, request_seed: int) -> int:
    """The seed of one image's ``torch.Generator``, from the run seed and the request seed.

    - ``run_seed == 0`` (the default): the request seed itself. So an I2P row's
      ``sd_seed`` (with its guidance) reproduces the published image protocol, and a
      user's seed means what they expect.
    - otherwise: the first 8 bytes of ``sha256("erasekit-image-seed:{run_seed}:{request_seed}")``
      as a big-endian integer, masked to 63 bits. Stable across Python versions and
      platforms (no ``hash()``), independent of batch size and order, and different
      run seeds give unrelated noise for the same request seed.
    """
    run_seed, request_seed = int(run_seed), int(request_seed)
    if run_seed == 0:
        return request_seed
    digest = hashlib.sha256(f"erasekit-image-seed:{run_seed}:{request_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


@dataclass
class GenerationStats:
    """Counters for report.json ``images``: ``generated + reused == unique`` (without sharding).

    ``requested``: requests received (duplicates included); ``unique``: distinct cache
    keys; ``generated``: images made by this call; ``reused``: unique images found in
    the cache; ``pending``: missing images left to other shard ranks. ``seconds`` /
    ``images_per_s`` time the generation itself (pipe calls + cache writes);
    ``pipe_seconds`` the pipeline calls alone and ``write_seconds`` the cache writes (on the
    writer threads with ``overlap``, so the two may add up to more than ``seconds``).
    """

    requested: int
    unique: int
    generated: int
    reused: int
    seconds: float = 0.0
    images_per_s: float = 0.0
    pending: int = 0
    pipe_seconds: float = 0.0
    write_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sampler_settings(
    pipe: Any,
    num_inference_steps: int,
    guidance_scale: float,
    height: int | None = None,
    width: int | None = None,
    batch_size: int = 0,
) -> SamplerSettings:
    """SamplerSettings for ``pipe``: scheduler and dtype read from the pipe, size from the
    UNet's native resolution unless given, batch size and (on the CPU) torch's thread count as
    they will be used. Use this so the cache key tells the truth."""
    from erasekit.models.families import family_of

    h = height or _native_size(pipe)
    w = width or _native_size(pipe)
    device = _pipe_device_type(pipe)
    return SamplerSettings(
        family=family_of(pipe),
        memory_format=_memory_format(pipe),
        num_inference_steps=int(num_inference_steps),
        guidance_scale=float(guidance_scale),
        height=int(h),
        width=int(w),
        scheduler=type(pipe.scheduler).__name__,
        dtype=_pipe_dtype(pipe) or "float32",
        device=device,
        batch_size=int(batch_size),
        cpu_threads=cpu_threads(device),
    )


def cpu_threads(device_type: str) -> int:
    """torch's intra-op thread count when generating on the CPU (pixels depend on it), else 0."""
    if device_type != "cpu":
        return 0
    import torch

    return int(torch.get_num_threads())


def _memory_format(pipe: Any) -> str:
    import torch

    for p in getattr(getattr(pipe, "unet", None), "parameters", lambda: [])():
        if p.ndim == 4:  # the first convolution's weight tells the layout
            return "channels_last" if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() else "contiguous"
    return "contiguous"


def _pipe_device_type(pipe: Any) -> str:
    try:
        return str(pipe.device.type)
    except AttributeError:
        return "cpu"


def _native_size(pipe: Any) -> int:
    return int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


def _pipe_dtype(pipe: Any) -> str | None:
    unet = getattr(pipe, "unet", None)
    dtype = getattr(unet, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


class ImageGenerator:
    """Serves image requests from the cache, generating what is missing in batches.

    ``fingerprint`` is the model identity (base weights + technique + config, see
    :meth:`erasekit.techniques.base.Technique.fingerprint`); it is part of every key.
    ``shard=(rank, world)`` makes this process generate only the missing images among
    ``unique[rank::world]`` (unique requests in first-seen order: the same list on every
    rank, whatever the cache holds when a rank plans). After a barrier, call
    :meth:`generate` again without a shard to collect and verify all images; it
    generates anything a failed rank left behind.
    """

    def __init__(
        self,
        pipe: Any,
        fingerprint: str,
        sampler: SamplerSettings,
        cache: ImageCache,
        run_seed: int = 0,
        batch_size: int = 8,
        show_progress: bool = True,
        shard: tuple[int, int] | None = None,
        overlap: bool = True,
        on_batch: Callable[[list[Committed]], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if shard is not None:
            rank, world = shard
            if world < 1 or not 0 <= rank < world:
                raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        self._check_sampler_matches_pipe(pipe, sampler)
        self.pipe = pipe
        self.fingerprint = fingerprint
        # the batch size and thread count this generator really uses are part of every key
        self.sampler = dataclasses.replace(sampler, batch_size=int(batch_size), cpu_threads=cpu_threads(sampler.device))
        self.cache = cache
        self.run_seed = int(run_seed)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.shard = shard
        self.overlap = bool(overlap)
        self.on_batch = on_batch

    @staticmethod
    def _check_sampler_matches_pipe(pipe: Any, sampler: SamplerSettings) -> None:
        """A key that names the wrong scheduler or dtype would serve wrong images later."""
        sched = getattr(pipe, "scheduler", None)
        if sched is not None and type(sched).__name__ != sampler.scheduler:
            raise ValueError(
                f"sampler.scheduler is {sampler.scheduler!r} but the pipeline uses {type(sched).__name__}; "
                "build SamplerSettings with erasekit.generation.sampler_settings(pipe, ...)"
            )
        dtype = _pipe_dtype(pipe)
        if dtype is not None and dtype != sampler.dtype:
            raise ValueError(
                f"sampler.dtype is {sampler.dtype!r} but the pipeline's UNet is {dtype}; "
                "build SamplerSettings with erasekit.generation.sampler_settings(pipe, ...)"
            )

    # ------------------------------------------------------------------ planning

    def key(self, request: ImageRequest) -> str:
        return self.cache.key(self.fingerprint, request, self.sampler, self.run_seed)

    def guidance(self, request: ImageRequest) -> float:
        return float(self.sampler.guidance_scale if request.guidance_scale is None else request.guidance_scale)

    def _plan(self, requests: list[ImageRequest]) -> tuple[list[str], dict[str, ImageRequest], dict[str, Path]]:
        """Keys aligned with ``requests``, unique key → first request, cached key → path."""
        keys = [self.key(r) for r in requests]
        unique: dict[str, ImageRequest] = {}
        for k, r in zip(keys, requests, strict=True):
            unique.setdefault(k, r)
        cached: dict[str, Path] = {}
        for k in unique:
            p = self.cache.get(k)
            if p is not None:
                cached[k] = p
        return keys, unique, cached

    def plan(self, requests: list[ImageRequest]) -> tuple[list[ImageRequest], list[ImageRequest]]:
        """(unique requests in first-seen order, those of them not in the cache)."""
        _, unique, cached = self._plan(requests)
        return list(unique.values()), [r for k, r in unique.items() if k not in cached]

    def _batches(self, todo: list[tuple[str, ImageRequest]]) -> list[list[tuple[str, ImageRequest]]]:
        """Chunks of at most batch_size requests with one guidance scale each (first-seen order)."""
        groups: dict[float, list[tuple[str, ImageRequest]]] = {}
        for item in todo:
            groups.setdefault(self.guidance(item[1]), []).append(item)
        out = []
        for items in groups.values():
            out.extend(items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size))
        return out

    # ------------------------------------------------------------------ generation

    def generate(self, requests: list[ImageRequest]) -> tuple[list[GeneratedImage], GenerationStats]:
        """Images aligned 1:1 with ``requests`` (duplicates share one file) and the counters."""
        keys, unique, cached = self._plan(requests)
        missing = [(k, r) for k, r in unique.items() if k not in cached]
        todo = missing
        if self.shard is not None:
            # Slice the *unique* list, not the missing one: every rank computes the same
            # unique list whatever the cache holds when it plans, so a rank that starts
            # late (after another already wrote images) still takes exactly its own share.
            rank, world = self.shard
            mine = set(list(unique)[rank::world])
            todo = [(k, r) for k, r in missing if k in mine]

        generated: dict[str, Path] = {}
        seconds = 0.0
        writer = _Writer(self.cache, self.overlap, self.on_batch)
        if todo:
            self.cache.sweep_tmp()
            t0 = time.perf_counter()
            with _progress(len(todo), self.show_progress) as advance, writer:
                for batch in self._batches(todo):
                    t1 = time.perf_counter()
                    images = self._run_pipe(batch)
                    writer.pipe_seconds += time.perf_counter() - t1
                    writer.submit([(k, r, img, self._meta(k, r)) for (k, r), img in zip(batch, images, strict=True)])
                    advance(len(batch))
            generated = writer.paths
            seconds = time.perf_counter() - t0

        images = []
        for k, r in zip(keys, requests, strict=True):
            path = cached.get(k) or generated.get(k) or self.cache.path(k)  # last: another rank's
            images.append(GeneratedImage(request=r, key=k, path=path, reused=k in cached))
        stats = GenerationStats(
            requested=len(requests),
            unique=len(unique),
            generated=len(generated),
            reused=len(cached),
            seconds=round(seconds, 3),
            images_per_s=round(len(generated) / seconds, 3) if seconds > 0 else 0.0,
            pending=len(missing) - len(todo),
            pipe_seconds=round(writer.pipe_seconds, 3),
            write_seconds=round(writer.write_seconds, 3),
        )
        log.info(
            "images: %d requested, %d unique, %d reused, %d generated (%.2f images/s)",
            stats.requested, stats.unique, stats.reused, stats.generated, stats.images_per_s,
        )
        return images, stats

    def _run_pipe(self, batch: list[tuple[str, ImageRequest]]) -> list[Any]:
        import torch

        reqs = [r for _, r in batch]
        n_real = len(reqs)
        # Pad every call to exactly batch_size (copies of the last request, discarded below).
        # Why: CPU/GPU kernels give per-image results that depend on the batch *size* (±1 grey
        # level) but not on position or companions (measured). With a fixed size, an image is
        # bit-identical whether it was made in a fresh run, a resumed run or on any rank.
        reqs = reqs + [reqs[-1]] * (self.batch_size - n_real)
        generators = [torch.Generator("cpu").manual_seed(image_seed(self.run_seed, r.seed)) for r in reqs]
        with torch.inference_mode():  # through the technique's sampling hook, if it installed one
            images = sample(self.pipe, [r.prompt for r in reqs], [r.negative_prompt for r in reqs],
                            steps=self.sampler.num_inference_steps, guidance=self.guidance(reqs[0]),
                            height=self.sampler.height, width=self.sampler.width, generators=generators, output_type="pil")
        if len(images) != len(reqs):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(reqs)} prompts")
        return images[:n_real]

    def _meta(self, key: str, request: ImageRequest) -> dict[str, Any]:
        import erasekit

        meta = key_payload(self.fingerprint, request, self.sampler, image_seed(self.run_seed, request.seed))
        meta.update(
            request_seed=request.seed,
            run_seed=self.run_seed,
            erasekit_version=getattr(erasekit, "__version__", "unknown"),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            generated_by_rank=self.shard[0] if self.shard is not None else 0,
        )
        return meta


@dataclass
class Committed:
    """One image that is now in the cache (``image``: the PIL image itself, so a listener can
    score it without decoding the PNG again)."""

    key: str
    request: ImageRequest
    path: Path
    image: Any


class _Writer:
    """Commits each batch's images to the cache: on writer threads (``overlap``) while the next
    batch is generated, or inline. At most one batch waits; ``on_batch`` runs on the calling
    thread, in batch order, once a batch is fully committed. A failed write raises here."""

    THREADS = 2

    def __init__(self, cache: ImageCache, overlap: bool, on_batch: Callable[[list[Committed]], None] | None) -> None:
        self.cache, self.on_batch = cache, on_batch
        self.pool = ThreadPoolExecutor(self.THREADS, thread_name_prefix="erasekit-write") if overlap else None
        self.waiting: list[tuple[list[Committed], list[Future[float]]]] = []
        self.paths: dict[str, Path] = {}
        self.pipe_seconds = 0.0
        self.write_seconds = 0.0

    def _put(self, key: str, image: Any, meta: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        self.cache.put(key, image, meta)
        return time.perf_counter() - t0

    def submit(self, items: list[tuple[str, ImageRequest, Any, dict[str, Any]]]) -> None:
        done = [Committed(k, r, self.cache.path(k), img) for k, r, img, _ in items]
        if self.pool is None:
            self._finish(done, [self._put(k, img, meta) for k, _, img, meta in items])
            return
        futures = [self.pool.submit(self._put, k, img, meta) for k, _, img, meta in items]
        self.waiting.append((done, futures))
        while len(self.waiting) > 1:  # the previous batch must be committed before the next one is drawn
            self._collect()

    def _collect(self) -> None:
        done, futures = self.waiting.pop(0)
        self._finish(done, [f.result() for f in futures])

    def _finish(self, done: list[Committed], seconds: list[float]) -> None:
        self.write_seconds += sum(seconds)
        for c in done:
            self.paths[c.key] = c.path
        if self.on_batch is not None:
            self.on_batch(done)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                while self.waiting:
                    self._collect()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)  # a write already started finishes (atomic either way)


class _progress:
    """A rich progress bar (images/s, ETA) on stderr; silent when not a TTY or disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        class _Speed(TextColumn):
            def render(self, task):  # type: ignore[override]
                from rich.text import Text

                speed = task.finished_speed or task.speed
                return Text(f"{speed:.2f} img/s" if speed else "-- img/s")

        self._progress = Progress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            _Speed(""),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        task = self._progress.add_task("generating", total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
