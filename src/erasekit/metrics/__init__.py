"""Metrics. Each is one module registering itself in ``METRICS``."""

from erasekit.metrics import (  # noqa: F401  (import = registration)
    asr_custom,
    asr_i2p,
    clip_score,
    err,
    fid,
    mma_diffusion,
    tifa,
    ua_ira,
)
from erasekit.metrics.base import Metric, MetricContext, MetricResult

__all__ = ["Metric", "MetricContext", "MetricResult"]
