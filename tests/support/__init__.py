"""Shared test helpers, importable everywhere as ``support.*`` (``pythonpath = ["tests"]`` in pyproject.toml).

- ``support.tiny_models``: tiny random SD-shaped pipeline / mini-CLIP folders built offline;
- ``support.metric_harness``: run configs, metric contexts, served images and fake detectors for metric tests;
- ``support.e2e_metrics``: two test metrics for end-to-end runs through ``erasekit run``;
- ``support.e2e_cli``: ``erasekit run`` as a subprocess script with those metrics registered.
"""
