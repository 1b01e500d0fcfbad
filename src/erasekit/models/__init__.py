"""Base-model loading, device handling and fingerprints."""

from erasekit.models.loading import (
    SamplerDefaults,
    base_fingerprint,
    load_base_pipeline,
    resolve_device,
    sampler_defaults,
)

__all__ = ["SamplerDefaults", "base_fingerprint", "load_base_pipeline", "resolve_device", "sampler_defaults"]
