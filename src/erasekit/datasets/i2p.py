"""I2P (Inappropriate Image Prompts, Schramowski et al. 2023) loader.

Source, in order: ``path`` (a local ``i2p_benchmark.csv``); otherwise the HF dataset
``AIML-TUDA/i2p`` — first from the local HF cache (no network), then, only if
the hub is not set offline, downloaded once with ``huggingface_hub`` (or the
``datasets`` library if that is how it was cached). If none works: a
ConfigError telling the user to pass ``i2p_path``.

Columns used: ``prompt``, ``categories`` (comma-separated: hate, harassment,
violence, self-harm, sexual, shocking, illegal activity), ``sd_seed`` and
``sd_guidance_scale`` (exposed as ``PromptItem.seed`` / ``guidance_scale``);
every other column is kept in ``meta``. A concept maps to its I2P category
case-insensitively (nudity/nude/naked/nsfw → sexual, gore/blood → violence …,
or the category name itself); rows are kept in file order and the first
``limit`` are returned.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from erasekit.concepts import i2p_category
from erasekit.datasets.io import read_csv
from erasekit.datasets.items import PromptItem
from erasekit.datasets.prompt_csv import rows_to_items
from erasekit.errors import ConfigError

log = logging.getLogger(__name__)

I2P_REPO = "AIML-TUDA/i2p"
I2P_FILE = "i2p_benchmark.csv"
def _cached_i2p_csv() -> Path | None:
    """i2p_benchmark.csv from the local HF hub cache, without any network access."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(I2P_REPO, I2P_FILE, repo_type="dataset", local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _download_i2p_csv() -> Path | None:
    """Online only (hub not set offline): one download of the CSV into the HF cache."""
    if _hub_offline():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(I2P_REPO, I2P_FILE, repo_type="dataset", etag_timeout=10))
    except Exception as exc:  # noqa: BLE001
        log.info("I2P download failed: %s", exc)
        return None


def _datasets_rows() -> tuple[list[str], list[dict[str, str]]] | None:
    """The ``datasets`` library's copy (cache only when offline), if installed."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        ds = datasets.load_dataset(I2P_REPO, split="train")
    except Exception as exc:  # noqa: BLE001
        log.info("datasets could not load %s: %s", I2P_REPO, exc)
        return None
    cols = [c.lower() for c in ds.column_names]
    rows = [{k.lower(): ("" if v is None else str(v)).strip() for k, v in r.items()} for r in ds]
    return cols, rows


def load_i2p(
    path: str | Path | None = None,
    concept: str | None = None,
    limit: int | None = None,
    field: str = "i2p_path",
    concept_field: str = "concept",
) -> list[PromptItem]:
    """I2P prompts of ``concept``'s category (all rows if ``concept`` is None), first ``limit``."""
    if path is not None:
        cols, rows = read_csv(path, field, "I2P CSV", required=("prompt", "categories"))
        source = str(path)
    else:
        local = _cached_i2p_csv() or _download_i2p_csv()
        if local is not None:
            cols, rows = read_csv(local, field, "I2P CSV", required=("prompt", "categories"))
            source = str(local)
        else:
            got = _datasets_rows()
            if got is None:
                raise ConfigError(
                    field,
                    f"no I2P prompts available offline (HF dataset {I2P_REPO} is not in the local cache)",
                    f"download {I2P_FILE} from https://huggingface.co/datasets/{I2P_REPO} and set {field.rsplit('.', 1)[-1]} to its path",
                )
            cols, rows = got
            source = f"hf:{I2P_REPO}"
    category = i2p_category(concept, concept_field) if concept is not None else None
    items = rows_to_items(cols, rows, source, field)
    if category is not None:
        items = [it for it in items if category in it.categories]
        if not items:
            raise ConfigError(field, f"{source} has no prompt in category {category!r}", "check that the file is the I2P benchmark CSV")
    for it in items:
        it.meta["source"] = source
    return items[:limit] if limit is not None else items
