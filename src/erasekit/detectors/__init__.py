"""Detectors: images in, per-image scores and decisions out.

One interface (:class:`Detector`: ``detect(images, concept) -> list[Detection]`` and
``protocol()``), shared by all metrics through a per-run :class:`DetectorPool`.
Registered names: ``nudenet``, ``clip``, ``toy_judge``, ``vqa``, ``toy_vqa``.
Importing this package registers them; heavy libraries (torch, transformers,
onnxruntime) load only when a detector is built.
"""

from erasekit.detectors.base import Detection, Detector
from erasekit.detectors.clip import ClipDetector, load_clip_model
from erasekit.detectors.nudenet import NudeNetDetection, NudeNetDetector, class_counts, decide_nudenet
from erasekit.detectors.pool import DetectorPool
from erasekit.detectors.presets import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_THRESHOLD,
    DEFAULT_JUDGE_THRESHOLD,
    DEFAULT_NUDENET_PRESET,
    NUDENET_PRESETS,
    NudeNetPreset,
    nudenet_preset,
)
from erasekit.detectors.toy_judge import ToyJudgeDetector, decide_judge, toy_concept
from erasekit.detectors.vqa import VQA, BlipVQA, ToyVQA, make_vqa, normalise_answer, snap_to_choice

__all__ = [
    "BlipVQA",
    "ClipDetector",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_CLIP_THRESHOLD",
    "DEFAULT_JUDGE_THRESHOLD",
    "DEFAULT_NUDENET_PRESET",
    "Detection",
    "Detector",
    "DetectorPool",
    "NUDENET_PRESETS",
    "NudeNetDetection",
    "NudeNetDetector",
    "NudeNetPreset",
    "ToyJudgeDetector",
    "ToyVQA",
    "VQA",
    "class_counts",
    "decide_judge",
    "decide_nudenet",
    "load_clip_model",
    "make_vqa",
    "normalise_answer",
    "nudenet_preset",
    "snap_to_choice",
    "toy_concept",
]
