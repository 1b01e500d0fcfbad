"""Content-addressed image cache: each unique image is generated once, ever.

Layout under ``root``::

    images/<key[:2]>/<key>.png    the image (RGB, pixels only: no text chunks, no timestamps)
    images/<key[:2]>/<key>.json   sidecar: the key's inputs + sha256 of the PNG bytes

Why these choices:

- The key is a sha256 over everything that determines the pixels (model fingerprint,
  prompt, negative prompt, *effective* seed, steps, *effective* guidance, height,
  width, scheduler, dtype, device type; for SD 2.x and SDXL the family, and SDXL's
  size/crop conditioning). Two requests that must give the same pixels share a key;
  two that may differ never do. Metric settings are not in it, so metrics share images.
- Writes are atomic: temp file in the same folder, ``fsync``, ``os.replace``; the PNG
  first, the sidecar last. The sidecar is the commit marker: a kill -9 at any point
  leaves either a complete entry, or a PNG without sidecar (a miss: regenerated, and
  the PNG overwritten), or a stray ``*.tmp`` file (swept on the next generation).
- Reads trust nothing: the sidecar must parse and name the key, the PNG bytes must
  match the sidecar's sha256 and decode fully. Anything else is deleted and reported
  as a miss, so the engine regenerates it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasekit.generation.request import ImageRequest, SamplerSettings
from erasekit.utils.atomic_io import atomic_write_bytes, fsync_dir, sweep_stale_tmp
from erasekit.utils.canonical import stable_hash

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Bump when the key payload's meaning changes (old entries then simply stop matching).
KEY_VERSION = 3  # 2: the device type joined the key; 3: batch size and CPU thread count joined it


def key_payload(fingerprint: str, request: ImageRequest, sampler: SamplerSettings, image_seed: int) -> dict[str, Any]:
    """What determines an image's pixels, as a canonical dict.

    ``image_seed`` is the seed actually given to the image's ``torch.Generator``
    (see :func:`erasekit.generation.engine.image_seed`); the guidance is the request's
    own value when it has one (I2P rows), else the sampler's. So an I2P row whose
    guidance equals the technique's is the same image as a plain request.
    """
    guidance = sampler.guidance_scale if request.guidance_scale is None else request.guidance_scale
    payload = {
        "v": KEY_VERSION,
        "fingerprint": fingerprint,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": int(image_seed),
        "steps": int(sampler.num_inference_steps),
        "guidance": float(guidance),
        "height": int(sampler.height),
        "width": int(sampler.width),
        "scheduler": sampler.scheduler,
        "dtype": sampler.dtype,
        "device": sampler.device,
        "batch_size": int(sampler.batch_size),
        "cpu_threads": int(sampler.cpu_threads),
    }
    if sampler.memory_format != "contiguous":
        payload["memory_format"] = sampler.memory_format
    if sampler.family != "sd1":
        # Other families condition on more than the prompt: the family names how (two encoders, pooled
        # text) and SDXL's size/crop ids are recorded. SD 1.x keys stay as they were, so caches stay valid.
        payload["family"] = sampler.family
        if sampler.family == "sdxl":
            from erasekit.models.conditioning import sdxl_micro_conditioning

            payload["conditioning"] = sdxl_micro_conditioning(sampler.height, sampler.width)
    return payload


class ImageCache:
    """PNG + JSON sidecar store addressed by :meth:`key`. Safe for concurrent writers
    (identical content, atomic renames) and for kill -9 at any instant."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"

    # ------------------------------------------------------------------ keys & paths

    @staticmethod
    def key(fingerprint: str, request: ImageRequest, sampler: SamplerSettings, run_seed: int) -> str:
        """sha256 hex of :func:`key_payload`, with the image seed derived from (run_seed, request.seed)."""
        from erasekit.generation.engine import image_seed

        payload = key_payload(fingerprint, request, sampler, image_seed(run_seed, request.seed))
        return stable_hash(payload)

    def path(self, key: str) -> Path:
        """Where the PNG of ``key`` lives (whether or not it exists yet)."""
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.images_dir / key[:2] / f"{key}.png"

    def sidecar_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".json")

    # ------------------------------------------------------------------ read

    def get(self, key: str) -> Path | None:
        """The PNG path if a complete, valid entry exists; else None (a bad entry is deleted)."""
        png, side = self.path(key), self.sidecar_path(key)
        if not side.exists():
            # No sidecar = not committed: a writer was killed between the two renames, or
            # (shared cache, several ranks) is between them right now. Either way a miss;
            # the PNG is left alone (deleting it could race a live writer) and is
            # overwritten atomically when the image is generated.
            return None
        problem = self._verify(key, png, side)
        if problem is not None:
            self._discard(key, problem)
            return None
        return png

    def meta(self, key: str) -> dict[str, Any] | None:
        """The sidecar of a valid entry (None when missing or corrupt)."""
        if self.get(key) is None:
            return None
        return json.loads(self.sidecar_path(key).read_text(encoding="utf-8"))

    def _verify(self, key: str, png: Path, side: Path) -> str | None:
        from PIL import Image

        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return "unreadable sidecar"
        if not isinstance(meta, dict) or meta.get("key") != key:
            return "sidecar does not name this key"
        try:
            data = png.read_bytes()
        except OSError:
            return "missing or unreadable PNG"
        if hashlib.sha256(data).hexdigest() != meta.get("png_sha256"):
            return "PNG bytes do not match the sidecar hash (truncated or altered)"
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "PNG":
                    return f"not a PNG ({im.format})"
                im.load()  # decodes every row: a truncated stream raises here
                size = im.size
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
            return f"PNG does not decode ({exc.__class__.__name__})"
        w, h = meta.get("width"), meta.get("height")
        if w is not None and h is not None and (int(w), int(h)) != size:
            return f"PNG size {size} differs from the sidecar's {(w, h)}"
        return None

    def _discard(self, key: str, why: str) -> None:
        log.warning("image cache: discarding %s (%s); it will be regenerated", key[:16], why)
        self.sidecar_path(key).unlink(missing_ok=True)
        self.path(key).unlink(missing_ok=True)

    # ------------------------------------------------------------------ write

    def put(self, key: str, image: Image.Image, meta: dict[str, Any]) -> Path:
        """Store ``image`` under ``key`` atomically and return the PNG path.

        ``meta`` is recorded in the sidecar (plus ``key``, ``png_sha256``, ``width``,
        ``height``). PNG encoding has no timestamps or text chunks, so the same
        pixels always give the same bytes.
        """
        png = self.path(key)
        png.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        data = buf.getvalue()
        side = dict(meta)
        side.update(
            key=key,
            png_sha256=hashlib.sha256(data).hexdigest(),
            width=image.size[0],
            height=image.size[1],
        )
        atomic_write_bytes(png, data)
        atomic_write_bytes(self.sidecar_path(key), (json.dumps(side, sort_keys=True, indent=1) + "\n").encode())
        fsync_dir(png.parent)
        return png

    # ------------------------------------------------------------------ housekeeping

    def sweep_tmp(self, max_age_s: float = 3600.0) -> int:
        """Delete temp files left by killed writers (:func:`erasekit.utils.atomic_io.sweep_stale_tmp`)."""
        if not self.images_dir.is_dir():
            return 0
        return sweep_stale_tmp([sub for sub in self.images_dir.iterdir() if sub.is_dir()], max_age_s)
