"""Metrics. Each is one module in this folder registering itself with ``@METRICS.register``.

Every module here is imported when the package is (so a new metric is one new file);
modules that are not metrics (``base``, ``common``, ``fields``, ``frechet``) register nothing.
"""

from erasekit.metrics.base import Metric, MetricContext, MetricResult, Score
from erasekit.registry import import_package_modules

import_package_modules(__name__)

__all__ = ["Metric", "MetricContext", "MetricResult", "Score"]
