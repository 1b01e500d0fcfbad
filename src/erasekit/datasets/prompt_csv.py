"""Generic prompt CSVs: a ``prompt`` column, optional seed / guidance / categories.

Accepted column names (case-insensitive), so the CSVs published with
erasure papers load as they are:

- prompt: ``prompt``
- seed: ``seed``, ``evaluation_seed`` (ESD/MACE/UnlearnDiff CSVs), ``sd_seed`` (I2P)
- guidance: ``guidance_scale``, ``evaluation_guidance``, ``sd_guidance_scale``
- categories: ``categories`` (comma-separated)

Other columns go to ``PromptItem.meta`` (with ``row``, the data-row index).
Rows with an empty prompt are skipped with a warning; a bad seed is a
ConfigError naming the row.
"""

from __future__ import annotations

import logging
from pathlib import Path

from erasekit.datasets.io import first_column, parse_float, parse_int, read_csv
from erasekit.datasets.items import PromptItem

log = logging.getLogger(__name__)

SEED_COLUMNS = ("seed", "evaluation_seed", "sd_seed")
GUIDANCE_COLUMNS = ("guidance_scale", "evaluation_guidance", "sd_guidance_scale")


#: the range technique.config.guidance_scale accepts; a row's own guidance must fit it too
GUIDANCE_RANGE = (0.0, 100.0)


def _guidance(value: str, field: str, where: str, column: str) -> float | None:
    g = parse_float(value, field, where, column)
    if g is not None and not GUIDANCE_RANGE[0] <= g <= GUIDANCE_RANGE[1]:
        from erasekit.errors import ConfigError

        raise ConfigError(field, f"{where}: {column} {g} is outside [{GUIDANCE_RANGE[0]:g}, {GUIDANCE_RANGE[1]:g}]",
                          f"fix the {column} column")
    return g


def split_categories(value: str) -> tuple[str, ...]:
    return tuple(c.strip().lower() for c in value.split(",") if c.strip())


def rows_to_items(
    cols: list[str], rows: list[dict[str, str]], path: str | Path, field: str, prompt_column: str = "prompt"
) -> list[PromptItem]:
    seed_col = first_column(cols, SEED_COLUMNS)
    guid_col = first_column(cols, GUIDANCE_COLUMNS)
    used = {prompt_column, seed_col, guid_col, "categories"}
    items: list[PromptItem] = []
    skipped = 0
    for i, row in enumerate(rows):
        prompt = row.get(prompt_column, "")
        if not prompt:
            skipped += 1
            continue
        where = f"{Path(path).name} data row {i + 1}"
        items.append(
            PromptItem(
                prompt=prompt,
                seed=parse_int(row.get(seed_col, ""), field, where, seed_col) if seed_col else None,
                guidance_scale=_guidance(row.get(guid_col, ""), field, where, guid_col) if guid_col else None,
                categories=split_categories(row.get("categories", "")),
                meta={"row": i, **{k: v for k, v in row.items() if k not in used}},
            )
        )
    if skipped:
        log.warning("%s: skipped %d row(s) with an empty prompt", path, skipped)
    return items


def load_prompt_csv(path: str | Path, limit: int | None = None, field: str = "prompts_path") -> list[PromptItem]:
    """Prompts from a CSV with a ``prompt`` column (first ``limit`` non-empty rows, file order)."""
    cols, rows = read_csv(path, field, "prompt CSV", required=("prompt",))
    items = rows_to_items(cols, rows, path, field)
    if not items:
        from erasekit.errors import ConfigError

        raise ConfigError(field, f"{path} has no non-empty prompt", "fill the 'prompt' column")
    return items[:limit] if limit is not None else items
