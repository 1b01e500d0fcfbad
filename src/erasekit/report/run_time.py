"""Where a run's time went: ``report.json`` ``throughput`` (images/s and the time split).

Generation figures are written per model as each generation pass ends (the runner); this adds
the detectors' images/s (from :meth:`erasekit.detectors.base.Detector.throughput`) and the split
of the run's seconds, once, before the report is finished.
"""

from __future__ import annotations

from typing import Any


def generation_entry(stats: Any, overlap: bool) -> dict[str, Any]:
    """One model's generation figures (:class:`erasekit.generation.engine.GenerationStats`)."""
    return {"images": int(stats.generated), "seconds": stats.seconds, "images_per_s": stats.images_per_s,
            "pipe_seconds": stats.pipe_seconds, "write_seconds": stats.write_seconds, "overlap": bool(overlap)}


def summarise_throughput(report: dict[str, Any], detectors: list[dict[str, Any]]) -> dict[str, Any]:
    """Fill ``report["throughput"]`` from the report's timings and the run's loaded detectors
    (:meth:`erasekit.detectors.pool.DetectorPool.loaded`); returns that dict."""
    tp = report.setdefault("throughput", {})
    tp["detectors"] = [{"name": d["name"], "device": d["device"], **d["throughput"]}
                       for d in detectors if d.get("throughput", {}).get("images")]
    t = report.get("timings", {})
    tp["time_split"] = {
        "load": t.get("load_seconds"),
        "technique": report.get("technique", {}).get("seconds"),
        "attack": round(sum(v for k, v in t.items() if k.startswith("prepare_seconds_")), 3),  # metric preparation
        "generation": round(sum(v for k, v in t.items() if k.startswith("generation_seconds_")), 3),
        "scoring": round(sum(m.get("seconds") or 0.0 for m in report.get("metrics", {}).values()), 3),
        "scoring_beside_generation": t.get("prefetch_scoring_seconds", 0.0),
    }
    return tp
