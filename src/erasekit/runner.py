"""The runner: technique once → all metrics' requests → one deduplicated generation → scores → report.

One-way data flow (DESIGN.md §2). What is written, and when:
- ``report.json`` is written at the start (status ``running``) and rewritten after the
  technique, after generation and after every metric, so a crash keeps everything finished.
- ``metrics/<key>.json`` and ``metrics/<key>.records.jsonl`` are written as each metric finishes.
- ``records.jsonl`` (one line per scored image, all metrics) is rewritten after each metric.
A metric that raises is recorded as ``status: failed`` with its error; the others still run;
the exit code is then 1. A config problem found before loading (e.g. CUDA requested on a
machine without it) raises ConfigError → exit 2.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erasekit import __version__
from erasekit.config import ResolvedMetric, ResolvedRun
from erasekit.detectors import DetectorPool
from erasekit.errors import ConfigError
from erasekit.generation.request import GeneratedImage, ImageRequest
from erasekit.metrics.base import Metric, MetricContext, MetricResult
from erasekit.metrics.protocols import brief, protocol_record
from erasekit.prefetch import PrefetchScorer, judges_beside_generation
from erasekit.preflight import check_machine
from erasekit.progress import Narrator
from erasekit.report.run_time import generation_entry, summarise_throughput
from erasekit.report.schema import (
    ImagesInfo,
    ModelInfo,
    Paths,
    Report,
    Seeds,
    TechniqueInfo,
    entry_json,
    pending_entry,
    report_json,
)
from erasekit.utils.atomic_io import (
    atomic_write_json,
    atomic_write_jsonl,
    sweep_stale_tmp,
    to_jsonable,
    write_in_place,
)
from erasekit.versions import library_versions

log = logging.getLogger("erasekit")

REPORT_NAME = "report.json"
RECORDS_NAME = "records.jsonl"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    report: dict[str, Any]
    exit_code: int
    output_dir: Path


@dataclass
class _Variant:
    """One model evaluated in a run: the edited model ('erased') or the base ('base')."""

    name: str
    fingerprint: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    requests: dict[str, list[ImageRequest]] = field(default_factory=dict)
    images: dict[str, list[GeneratedImage]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Runner:
    """Executes one ResolvedRun. Use :func:`run` unless you need the pieces."""

    def __init__(self, run: ResolvedRun, *, show_progress: bool = True, console: Any = None) -> None:
        self.run = run
        self.show_progress = show_progress
        self.console = console
        self.narrator = Narrator(console, spinners=show_progress)
        self.out = run.output_dir
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.report: dict[str, Any] = {}
        from erasekit.distributed import Dist

        self.dist = Dist()
        self._scorer = PrefetchScorer()

    # ------------------------------------------------------------ reporting
    def _save(self) -> None:
        """Write report.json, validated against :class:`erasekit.report.schema.Report`
        (same keys as the dict; a dict the schema rejects is still written, with a warning)."""
        if not self.dist.is_main:
            return
        try:
            payload: Any = report_json(self.report)
        except Exception:  # noqa: BLE001 - a schema problem must never cost the numbers
            log.warning("report.json does not match the report schema; writing it as is", exc_info=True)
            payload = self.report
        atomic_write_json(self.out / REPORT_NAME, payload)

    def _save_records(self) -> None:
        if not self.dist.is_main:
            return
        rows = [r for key in self.records for r in self.records[key]]
        atomic_write_jsonl(self.out / RECORDS_NAME, rows)

    # ------------------------------------------------------------ main
    def execute(self) -> RunOutcome:
        from erasekit.models.loading import (
            base_fingerprint,
            load_base_pipeline,
            model_family,
            resolve_device,
            sampler_defaults,
        )

        run = self.run
        tconf = run.technique_config
        check_machine(run)  # devices and folders: ConfigError (exit 2) before any model loads
        device = resolve_device(tconf.device)
        from erasekit.distributed import detect

        self.dist = detect(device)
        device = self.dist.device_for(device)
        if not self.dist.is_main:
            self.show_progress = False  # progress shown once, by the main process
        self.narrator.spinners, self.narrator.speaks = self.show_progress, self.dist.is_main

        import torch

        from erasekit.generation.cache import ImageCache
        from erasekit.generation.engine import ImageGenerator, sampler_settings
        for folder, field_name in ((self.out, "output_dir"), (run.cache_dir, "cache_dir")):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(field_name, f"cannot create {folder} ({exc.strerror or exc.__class__.__name__})",
                                  "choose a folder you can write") from None
        sweep_stale_tmp([self.out, self.out / "metrics"])  # leftovers of a killed earlier run
        norm = run.normalised()
        self.report = Report(
            erasekit_version=__version__,
            run_id=run.run_id(),
            status="running",
            started_at=_now(),
            finished_at=None,
            config=norm,
            paths=Paths(output_dir=str(self.out.resolve()), cache_dir=str(run.cache_dir.resolve())),
            model=ModelInfo(id=tconf.model_id, base_fingerprint=None, fingerprint=None, device=device),
            technique=TechniqueInfo(name=run.technique_name, status="pending", seconds=None, details={}),
            seeds=Seeds(run_seed=run.raw.seed, image_seed_rule="request seed when run seed is 0, else sha256(run seed, request seed)"),
            sampler={},
            images=ImagesInfo(requested=0, unique=0, generated=0, reused=0),
            metrics={m.key: pending_entry(m.name, m.key, m.cls) for m in run.metrics},
            timings={},
            versions=library_versions(),
            distributed={"world_size": self.dist.world},
        ).to_json_dict()
        self._save()
        log.debug("run %s, normalised config: %s", self.report["run_id"], json.dumps(norm, default=str))
        t_start = time.perf_counter()
        torch.manual_seed(run.raw.seed)

        t0 = time.perf_counter()
        with self.narrator.phase(f"loading base model {tconf.model_id} on {device}"):
            pipe = load_base_pipeline(tconf.model_id, device=device, use_fp16=tconf.use_fp16)
        if run.raw.compile:  # in place: names, checkpoints and edits unchanged; keys too (tolerance: README)
            pipe.unet.compile()
        self.report["timings"]["load_seconds"] = round(time.perf_counter() - t0, 3)
        base_fp = base_fingerprint(tconf.model_id)
        technique = run.technique_cls(tconf)
        fingerprint = technique.fingerprint(base_fp, run.technique_name)
        self.report["model"].update(
            base_fingerprint=base_fp, fingerprint=fingerprint, dtype=str(pipe.unet.dtype).replace("torch.", ""),
            **model_family(tconf.model_id).describe(),
        )
        defaults = sampler_defaults(tconf.model_id)
        sampler = sampler_settings(pipe, norm["technique"]["config"]["num_inference_steps"],
                                   norm["technique"]["config"]["guidance_scale"], defaults.height, defaults.width,
                                   batch_size=run.raw.batch_size)
        self.report["sampler"] = sampler.__dict__.copy()
        cache = ImageCache(run.cache_dir)
        pool = self._pool = DetectorPool(device)

        def make_generator(fp: str, shard: tuple[int, int] | None = None, on_batch: Any = None) -> Any:
            return ImageGenerator(pipe, fp, sampler, cache, run_seed=run.raw.seed, batch_size=run.raw.batch_size,
                                  show_progress=self.show_progress, shard=shard, overlap=run.raw.overlap, on_batch=on_batch)

        variants: list[_Variant] = []
        compare = run.raw.compare_to_base and run.technique_name != "none"
        if compare:
            # Base images first, while the weights are still unedited (one UNet in memory).
            base = _Variant("base", base_fp)
            self._prepare(base, pipe, pool)
            self._generate(base, make_generator, base_fp)
            variants.append(base)

        t0 = time.perf_counter()
        try:
            with self.narrator.phase(f"applying technique {run.technique_name}"):
                details = technique.apply(pipe)
            self.report["technique"].update(status="ok", details=details or {})
        except Exception as exc:  # noqa: BLE001 - recorded in the report, run ends with exit 1
            self.report["technique"].update(status="failed", error=_error_text(exc), traceback=traceback.format_exc())
            self.report["technique"]["seconds"] = round(time.perf_counter() - t0, 3)
            for key in self.report["metrics"]:
                self.report["metrics"][key].update(status="skipped", error="technique failed")
            return self._finish(1, t_start)
        self.report["technique"]["seconds"] = round(time.perf_counter() - t0, 3)
        self._save()

        erased = _Variant("erased", fingerprint)
        self._prepare(erased, pipe, pool)
        self.report["config_used"] = self._config_used(norm, erased, device, str(pipe.unet.dtype).replace("torch.", ""))
        self._generate(erased, make_generator, fingerprint)
        variants.insert(0, erased)
        if not self.dist.is_main:
            return RunOutcome(self.report, 0, self.out)  # rank 0 scores and reports

        self._scorer.wait()  # every verdict judged beside generation is in before scoring starts
        self.report["timings"]["prefetch_scoring_seconds"] = round(self._scorer.seconds, 3)
        failed = False
        for m in run.metrics:
            failed |= not self._score(m, variants)
        self.report["timings"]["total_seconds"] = round(time.perf_counter() - t_start, 3)
        return self._finish(1 if failed else 0, t_start)

    def _prepare(self, variant: _Variant, pipe: Any, pool: Any) -> None:
        """Instantiate every metric for this variant, let it precompute (split across ranks
        in a distributed run), then collect its requests."""
        t0 = time.perf_counter()
        for m in self.run.metrics:
            ctx = MetricContext(run=self.run, pipe=pipe, model_fingerprint=variant.fingerprint, detectors=pool,
                                cache_dir=self.run.cache_dir, variant=variant.name, log=log,
                                base_fingerprint=self.report.get("model", {}).get("base_fingerprint"),
                                half_precision=str(pipe.unet.dtype) in ("torch.float16", "torch.bfloat16"))
            try:
                # prompt sets; attacks (minutes at paper scale, with their own progress bar: no spinner)
                with self.narrator.phase(f"{variant.name}: preparing {m.key}", spin=False):
                    metric = m.cls.create(m.config, ctx, f"{m.path}.config")
                    variant.metrics[m.key] = metric
                    metric.prepare(self.dist.rank, self.dist.world)
            except Exception as exc:  # noqa: BLE001
                variant.errors[m.key] = _error_text(RuntimeError(str(exc)) if isinstance(exc, ConfigError) else exc)
                log.debug("metric %s failed while preparing", m.key, exc_info=True)
        self.dist.barrier()
        for key, metric in variant.metrics.items():
            if key in variant.errors:
                continue
            try:
                variant.requests[key] = list(metric.requests())
            except Exception as exc:  # noqa: BLE001
                variant.errors[key] = _error_text(RuntimeError(str(exc)) if isinstance(exc, ConfigError) else exc)
                log.debug("metric %s failed while collecting requests", key, exc_info=True)
        self.report["timings"][f"prepare_seconds_{variant.name}"] = round(time.perf_counter() - t0, 3)

    def _config_used(self, norm: dict[str, Any], variant: _Variant, device: str, dtype: str) -> dict[str, Any]:
        """The normalised config as this run really used it: the resolved device, half precision
        only where it ran, every model key a metric left open filled with the model it loads."""
        import copy

        used = copy.deepcopy(norm)
        tech = used["technique"]["config"]
        tech["device"] = device
        if "use_fp16" in tech:
            tech["use_fp16"] = dtype == "float16"
        for i, m in enumerate(self.run.metrics):
            metric = variant.metrics.get(m.key)
            if metric is None:
                continue
            try:
                used["metrics"][i]["config"] = metric.resolved_config(getattr(self._pool, "device", device))
            except Exception:  # noqa: BLE001 - a description must never cost the run
                log.debug("metric %s: could not resolve its config", m.key, exc_info=True)
        return used

    def _generate(self, variant: _Variant, make_generator: Any, fingerprint: str) -> None:
        """One deduplicated generation pass for all metrics of a variant.

        Distributed: each rank generates its slice of the missing images into the shared
        cache; after a barrier the main rank collects every image from the cache (and
        generates anything a rank left behind). ``generated`` counts images made by all ranks.
        """
        keys = [k for k in variant.requests]
        flat = [r for k in keys for r in variant.requests[k]]
        self.narrator.say(f"{variant.name}: {len(flat)} image requests from {len(keys)} metric(s)")
        t0 = time.perf_counter()
        by_rank: list[int] | None = None
        if self.dist.enabled:
            _, mine = make_generator(fingerprint, shard=(self.dist.rank, self.dist.world)).generate(flat)
            self.dist.barrier()
            by_rank = [int(n) for n in self.dist.gather(mine.generated)]
            if not self.dist.is_main:
                return
        gen = make_generator(fingerprint)
        if judges_beside_generation(self.run.raw.overlap, gen.sampler.device):
            gen.on_batch = self._scorer.listener(variant.metrics, variant.requests, variant.errors, gen.key)
        images, stats = gen.generate(flat)
        if by_rank is not None:
            stats.generated += sum(by_rank)
            stats.reused = stats.unique - stats.generated
            self.report["images"].setdefault("generated_by_rank", {})[variant.name] = by_rank
        i = 0
        for k in keys:
            n = len(variant.requests[k])
            variant.images[k] = images[i : i + n]
            i += n
        img = self.report["images"]
        for field_name in ("requested", "unique", "generated", "reused"):
            img[field_name] += int(getattr(stats, field_name))
        img.setdefault("by_model", {})[variant.name] = {f: int(getattr(stats, f)) for f in ("requested", "unique", "generated", "reused")}
        self.report.setdefault("throughput", {}).setdefault("generation", {})[variant.name] = generation_entry(stats, self.run.raw.overlap)
        self.report["timings"][f"generation_seconds_{variant.name}"] = round(time.perf_counter() - t0, 3)
        self._save()

    def _score(self, m: ResolvedMetric, variants: list[_Variant]) -> bool:
        entry = self.report["metrics"][m.key]
        t0 = time.perf_counter()
        ok = True
        rows: list[dict[str, Any]] = []
        for variant in variants:
            try:
                if m.key in variant.errors:
                    raise RuntimeError(variant.errors[m.key])
                with self.narrator.phase(f"{variant.name}: scoring {m.key}"):  # detector loads, reference statistics
                    result = variant.metrics[m.key].compute(variant.images[m.key])
                if not isinstance(result, MetricResult):
                    raise TypeError(f"{m.key}.compute returned {type(result).__name__}, not MetricResult")
            except Exception as exc:  # noqa: BLE001 - a failing metric must not stop the others
                ok = False
                err = variant.errors.get(m.key) or _error_text(exc)
                if variant.name == "erased":
                    entry.update(status="failed", error=err, value=None)
                    if m.key not in variant.errors:
                        entry["traceback"] = traceback.format_exc()
                else:
                    entry.update(base_status="failed", base_error=err)
                continue
            proto = self._protocol(m, result, len(variant.images[m.key]))
            short = brief(proto)
            for r in result.records:
                rows.append({"metric": m.key, "model": variant.name, **r, **({"protocol": short} if short else {})})
            if variant.name == "erased":
                entry.update(status="ok", value=result.value, details=result.details, protocol=proto)
            else:
                entry.update(base_value=result.value, base_details=result.details, base_protocol=proto)
        if entry.get("status") == "ok" and "base_value" in entry and entry["value"] is not None and entry["base_value"] is not None:
            entry["delta"] = entry["value"] - entry["base_value"]
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        self.records[m.key] = rows
        metric_dir = self.out / "metrics"
        try:
            metric_json: Any = entry_json({"name": m.name, **entry})
        except Exception:  # noqa: BLE001 - as in _save: never lose a result over the schema
            metric_json = {"name": m.name, **entry}
        atomic_write_json(metric_dir / f"{m.key}.json", metric_json)
        atomic_write_jsonl(metric_dir / f"{m.key}.records.jsonl", rows)
        self._save_records()
        self._save()
        status = entry["status"]
        value = entry.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        self.narrator.say(f"metric {m.key}: {status} {shown if status == 'ok' else entry.get('error', '')}")
        return ok

    def _protocol(self, m: ResolvedMetric, result: MetricResult, n_images: int) -> dict[str, Any] | None:
        """The protocol the number was computed under (:mod:`erasekit.metrics.protocols`)."""
        try:
            return protocol_record(m.cls, m.config, result.details or {}, n_images, self.report.get("sampler") or {},
                                   self.report.get("model") or {})
        except Exception:  # noqa: BLE001 - a description must never cost the number
            log.warning("metric %s: could not record its protocol", m.key, exc_info=True)
            return None

    def _finish(self, code: int, t_start: float) -> RunOutcome:
        """Records, then report.html, and report.json's final status last: a kill at any point
        leaves a report that says ``running`` (rerun to finish), never ``ok`` without its page."""
        self._scorer.wait()
        status = "ok" if code == 0 else "failed"
        self.report["finished_at"] = _now()
        self.report["timings"].setdefault("total_seconds", round(time.perf_counter() - t_start, 3))
        t0 = time.perf_counter()
        pool = getattr(self, "_pool", None)
        summarise_throughput(self.report, pool.loaded() if pool is not None else [])
        self._save_records()
        if self.dist.is_main:
            try:
                from erasekit.report.html import write_html

                write_html(self.out, report={**report_json(self.report), "status": status})
            except Exception:  # noqa: BLE001 - the HTML view must never cost the numbers
                log.warning("could not write report.html", exc_info=True)
        self.report["throughput"].setdefault("time_split", {})["report"] = round(time.perf_counter() - t0, 3)
        self.report["status"] = status
        self._save()
        return RunOutcome(self.report, code, self.out)

    def save_crash(self, exc: BaseException) -> None:
        """Mark the report ``crashed`` / ``interrupted`` with the reason. When the disk is full the
        atomic save itself fails; the report is then rewritten in place (it only shrinks or stays
        the same size, so it needs no new blocks); when even that fails the reason goes to the log."""
        self.report["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "crashed"
        self.report["error"] = _error_text(exc)
        self.report["finished_at"] = _now()
        try:
            self._save()
            self._save_records()
            return
        except OSError:
            log.debug("atomic save of the crashed report failed", exc_info=True)
        if not self.dist.is_main:
            return
        try:
            slim = {k: v for k, v in report_json(self.report).items() if k not in ("versions",)}
            write_in_place(self.out / REPORT_NAME, json.dumps(to_jsonable(slim), default=str).encode())
        except Exception:  # noqa: BLE001 - nothing more can be written; the CLI still says why
            log.error("could not record the crash in %s", self.out / REPORT_NAME, exc_info=True)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def run(run_config: ResolvedRun, *, show_progress: bool = True, console: Any = None) -> RunOutcome:
    """Execute a validated run. ConfigError propagates (exit 2); failures are recorded (exit 1)."""
    runner = Runner(run_config, show_progress=show_progress, console=console)
    try:
        return runner.execute()
    except BaseException as exc:
        # Keep what finished: mark the report so nobody mistakes a partial run for a result.
        if runner.report and not isinstance(exc, ConfigError):
            runner.save_crash(exc)
        raise
