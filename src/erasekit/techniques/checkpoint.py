"""Edited-UNet checkpoint files shared by techniques: safe loading, hashing, sidecars.

A technique that can persist its edit (``save_path`` / ``load_path``) writes
``torch.save(unet.state_dict())`` plus a JSON sidecar next to it. Loading never
executes code from the file (``torch.load(weights_only=True)``), and the file's
sha256 is what makes two checkpoints two models in the image cache.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from erasekit.errors import TechniqueError
from erasekit.utils.hashing import sha256_file


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file (memoised per path, size and mtime within the process)."""
    return sha256_file(path)


def sidecar_path(checkpoint: str | Path) -> Path:
    """``checkpoints/mace.pt`` → ``checkpoints/mace.pt.json``."""
    p = Path(checkpoint).expanduser()
    return p.with_name(p.name + ".json")


def kv_digest(layers: list[tuple[str, torch.nn.Linear]]) -> str:
    """Identity of the cross-attention K/V weights (rounded to fp16, so fp16 and fp32 runs of one base agree)."""
    h = hashlib.sha256()
    for name, lin in layers:
        h.update(name.encode())
        h.update(lin.weight.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A UNet state dict from ``path``, never executing code from the file.

    ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers;
    a pickle that names any other callable is refused before it runs.
    """
    p = Path(path).expanduser()
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError … all mean "not a safe checkpoint"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise TechniqueError(
            f"refused to load {p}: not a plain tensor state dict readable with torch.load(weights_only=True) ({first}). "
            "Use a .pt written by a technique's save_path (torch.save(unet.state_dict()))"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise TechniqueError(f"{p} is not a UNet state dict (a mapping of parameter names to tensors)")
    for name, tensor in state.items():
        # NaN/inf weights draw black images, which every detector calls "clean": a perfect-looking
        # erasure. Refuse them, naming the first bad tensor.
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise TechniqueError(f"refused to load {p}: tensor {name!r} holds NaN or infinite values (a diverged or corrupted edit)")
    return state
