"""Batched, seeded generation with a content-addressed image cache."""

from erasekit.generation.cache import ImageCache
from erasekit.generation.engine import GenerationStats, ImageGenerator, image_seed, sampler_settings
from erasekit.generation.request import GeneratedImage, ImageRequest, SamplerSettings

__all__ = [
    "GeneratedImage",
    "GenerationStats",
    "ImageCache",
    "ImageGenerator",
    "ImageRequest",
    "SamplerSettings",
    "image_seed",
    "sampler_settings",
]
