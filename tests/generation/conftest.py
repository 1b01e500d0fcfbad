"""Fixtures for the generation tests: a tiny random SD-shaped pipeline, built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support.tiny_models import GUIDANCE, STEPS, build_tiny_pipeline  # noqa: E402

from erasekit.generation import ImageCache, ImageGenerator, sampler_settings  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pipe(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipe"))


@pytest.fixture()
def make_generator(tiny_pipe, tmp_path):
    """Factory: an ImageGenerator over the tiny pipe with its own cache folder (default tmp_path/cache)."""

    def make(cache_dir: Path | None = None, **kw) -> ImageGenerator:
        sampler = kw.pop("sampler", None) or sampler_settings(tiny_pipe, STEPS, GUIDANCE)
        kw.setdefault("show_progress", False)
        return ImageGenerator(tiny_pipe, "fp-test", sampler, ImageCache(cache_dir or tmp_path / "cache"), **kw)

    return make
