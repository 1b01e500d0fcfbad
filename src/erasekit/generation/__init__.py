"""Batched, seeded generation with a content-addressed image cache."""

from erasekit.generation.request import GeneratedImage, ImageRequest, SamplerSettings

__all__ = ["GeneratedImage", "ImageRequest", "SamplerSettings"]
