"""Detectors: images in, per-image scores and decisions out."""

from erasekit.detectors.base import Detection, Detector

__all__ = ["Detection", "Detector"]
