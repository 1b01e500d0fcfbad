"""Shared test setup: offline hub, one torch thread, tiny SD-shaped pipeline and mini-CLIP folders.

The tiny pipeline is randomly initialised (so it draws noise) but has exactly the
layout of an SD v1.x diffusers folder: it exercises the real loading, editing and
generation code paths in seconds. Behavioural tests use the trained toy world.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from support.tiny_models import build_tiny_clip, build_tiny_sd  # noqa: E402

torch.set_num_threads(1)  # on a 2-core CI box one thread per process is faster and steadier


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random SD-shaped diffusers folder usable as technique.config.model_id."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "pipe")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random mini-CLIP-shaped CLIPModel + CLIPProcessor folder (the toy architecture, untrained)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip") / "clip")
