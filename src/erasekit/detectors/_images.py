"""Image-input normalisation shared by the detectors.

Detectors accept what metrics hold: PIL images, ``GeneratedImage`` objects (their
``.image``), file paths, or HWC uint8 RGB arrays. Everything becomes an RGB PIL
image here, so colour order is decided in exactly one place (NudeNet's BGR
conversion happens in its own module, from these RGB images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def to_pil_rgb(image: Any) -> Any:
    """One image → RGB PIL image. Arrays are taken as RGB (what ``np.asarray(pil)`` gives)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if hasattr(image, "image") and not isinstance(image, (str, Path, np.ndarray)):
        return to_pil_rgb(image.image)
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"expected an HxWx3 image array, got shape {arr.shape}")
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    raise TypeError(f"cannot read an image from {type(image).__name__}; pass PIL images, paths or HxWx3 arrays")


def to_pil_list(images: Any) -> list[Any]:
    """A batch of images (list, or an NHWC uint8 array) → list of RGB PIL images."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [to_pil_rgb(a) for a in images]
    return [to_pil_rgb(im) for im in images]
