"""erasekit: erase concepts from text-to-image diffusion models and measure what the erasure did."""

__version__ = "0.1.0"
