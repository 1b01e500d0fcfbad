"""COCO captions (for FID / CLIP score generation) and the reference image folder (for FID).

Captions ``path`` may be:

- a CSV with a ``caption`` or ``prompt`` column (e.g. MACE's ``coco_30k.csv``),
  optional seed column (``seed`` / ``evaluation_seed``) and ``image_id``;
- a COCO annotations JSON (``captions_val2014.json``: ``{"annotations":
  [{"image_id", "caption"}, ...]}``): the first caption of each image, in
  file order (one image per caption, as FID-on-COCO protocols use);
- a JSON list of strings or of ``{"caption": ...}`` objects.

COCO is not bundled: without ``path`` a real run gets a ConfigError naming
the field; the toy world's twins live in :mod:`erasekit.datasets.toy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasekit.datasets.io import read_csv, read_json
from erasekit.datasets.items import PromptItem, ReferenceImages, files_key
from erasekit.datasets.prompt_csv import rows_to_items
from erasekit.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_coco_captions(
    path: str | Path | None = None, limit: int | None = None, field: str = "captions_path"
) -> list[PromptItem]:
    """Captions as PromptItems (``meta["image_id"]`` when known), first ``limit``."""
    if path is None:
        raise ConfigError(
            field,
            "no captions file given (COCO captions are not bundled with erasekit)",
            "set it to a CSV with a 'caption' or 'prompt' column, or a COCO captions_*.json annotations file",
        )
    p = Path(path)
    if p.suffix.lower() == ".json":
        items = _captions_from_json(read_json(p, field, "captions JSON"), p, field)
    else:
        cols, rows = read_csv(p, field, "captions CSV", any_of=("caption", "prompt"))
        col = "caption" if "caption" in cols else "prompt"
        items = rows_to_items(cols, rows, p, field, prompt_column=col)
        for it in items:
            for k in ("image_id", "coco_id", "id"):
                if k in it.meta:
                    it.meta.setdefault("image_id", it.meta[k])
                    break
    if not items:
        raise ConfigError(field, f"{path} contains no captions", "give a file with at least one caption")
    return items[:limit] if limit is not None else items


def _captions_from_json(data: Any, path: Path, field: str) -> list[PromptItem]:
    bad = ConfigError(
        field,
        f"{path} is neither a COCO annotations file (with 'annotations') nor a list of captions",
        "give captions_*.json from COCO, or a JSON list of caption strings",
    )
    if isinstance(data, dict):
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise bad
        seen: set[Any] = set()
        items = []
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or not isinstance(a.get("caption"), str):
                raise ConfigError(field, f"{path}: annotation {i} has no 'caption' string", "check the annotations file")
            img = a.get("image_id")
            if img in seen:
                continue
            seen.add(img)
            items.append(PromptItem(prompt=" ".join(a["caption"].split()), meta={"image_id": img, "row": i}))
        return items
    if isinstance(data, list):
        items = []
        for i, e in enumerate(data):
            if isinstance(e, str):
                cap, meta = e, {"row": i}
            elif isinstance(e, dict) and isinstance(e.get("caption", e.get("prompt")), str):
                cap = e.get("caption", e.get("prompt"))
                meta = {"row": i, **{k: v for k, v in e.items() if k not in ("caption", "prompt")}}
            else:
                raise ConfigError(field, f"{path}: entry {i} is not a caption string or {{'caption': ...}}", "fix that entry")
            if cap.strip():
                items.append(PromptItem(prompt=" ".join(cap.split()), seed=_int_or_none(meta.get("seed")), meta=meta))
        return items
    raise bad


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def coco_reference_images(
    path: str | Path | None = None, limit: int | None = None, field: str = "reference_path"
) -> ReferenceImages:
    """The reference set for FID: image files of a folder (sorted by name, first ``limit``).

    A ``.npz`` of precomputed statistics is the FID metric's business: check for it before calling this.
    """
    if path is None:
        raise ConfigError(
            field,
            "no reference image folder given (COCO images are not bundled with erasekit)",
            "set it to a folder of reference images (e.g. COCO val2014) or a cached .npz of statistics",
        )
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(field, f"reference folder not found: {path}", "check the path")
    if not p.is_dir():
        raise ConfigError(field, f"{path} is not a folder", "give a folder of images (or a .npz of FID statistics)")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(field, f"{path} contains no images ({', '.join(IMAGE_SUFFIXES)})", "put the reference images in that folder")
    if limit is not None:
        files = files[:limit]
    return ReferenceImages(key=files_key(files, f"folder:{len(files)}"), source=str(p), paths=files)
