"""Toy versions of every dataset, generated in code from the toy world's vocabulary.

Why: every metric must run offline, end to end, on the toy model (CI, the
quickstart, tests), so each real prompt set has a deterministic toy twin:

- toy I2P (:func:`toy_i2p`): every toy caption ("a red circle", "a disc",
  "a blue shape", "a shape" …) repeated with 4 seeds; a row's categories are the
  toy concepts it names (its canonical shape and its colour; "a shape" has
  none, a distractor). Filtering by concept works as I2P's category filter.
- target / retain prompts for a concept (:func:`toy_target_prompts`,
  :func:`toy_retain_prompts`).
- COCO-like captions (:func:`toy_coco_captions`) cycling over all 16
  "a {colour} {shape}" captions plus the 4 shape-only and 4 colour-only ones,
  and a procedural reference image set (:func:`toy_reference_images`).
- TIFA-style questions (:func:`toy_tifa`): shape, colour and yes/no questions.

Seeds are part of each item, so two runs ask for the same images.
"""

from __future__ import annotations

import csv
from pathlib import Path

from erasekit.datasets.items import PromptItem, ReferenceImages, TifaItem, TifaQuestion
from erasekit.errors import ConfigError

TOY_I2P_REPEATS = 4
TOY_REFERENCE_SEED = 20240917
TOY_SOURCE = "toy"


def _vocab() -> tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[str, ...]]]:
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    return tuple(SHAPES), tuple(COLOURS), dict(SYNONYMS)


def toy_concept_name(concept: str, field: str = "concept") -> str:
    """Canonical toy concept (a shape or colour; synonyms → their shape); ConfigError otherwise."""
    shapes, colours, syns = _vocab()
    c = concept.strip().lower()
    canon = next((s for s, ws in syns.items() if c in ws), c)
    if canon not in shapes and canon not in colours:
        names = sorted({*shapes, *colours, *(w for ws in syns.values() for w in ws)})
        raise ConfigError(field, f"{concept!r} is not a toy-world concept", f"use one of {', '.join(names)}")
    return canon


def _caption_concepts(caption: str) -> tuple[str, ...]:
    shapes, colours, syns = _vocab()
    words = caption.split()
    out: list[str] = []
    for w in words:
        canon = next((s for s, ws in syns.items() if w in ws), w)
        if canon in shapes and canon not in out:
            out.append(canon)
    out += [w for w in words if w in colours and w not in out]
    return tuple(out)


def toy_captions() -> list[str]:
    """Every non-empty toy caption, in a fixed order: full captions, shape-only, colour-only, "a shape"."""
    shapes, colours, syns = _vocab()
    names = [*shapes, *(w for ws in syns.values() for w in ws)]
    caps = [f"a {c} {s}" for s in names for c in colours]
    caps += [f"a {s}" for s in names]
    caps += [f"a {c} shape" for c in colours]
    caps.append("a shape")
    return caps


def toy_i2p_table() -> list[PromptItem]:
    """The whole toy I2P table (all concepts), in file order."""
    caps = toy_captions()
    rows = []
    for rep in range(TOY_I2P_REPEATS):
        for j, cap in enumerate(caps):
            rows.append(
                PromptItem(
                    prompt=cap,
                    seed=rep * len(caps) + j,
                    guidance_scale=None,
                    categories=_caption_concepts(cap),
                    meta={"row": rep * len(caps) + j, "source": TOY_SOURCE},
                )
            )
    return rows


def toy_i2p(concept: str | None, limit: int | None = None, field: str = "concept") -> list[PromptItem]:
    """Toy I2P rows whose categories include ``concept`` (all rows if None), first ``limit``."""
    rows = toy_i2p_table()
    if concept is not None:
        c = toy_concept_name(concept, field)
        rows = [r for r in rows if c in r.categories]
    return rows[:limit] if limit is not None else rows


def toy_target_prompts(concept: str, limit: int | None = None, field: str = "concept") -> list[PromptItem]:
    """Prompts that name ``concept`` (its shape/synonyms in every colour, or its colour on every shape)."""
    return toy_i2p(concept, limit, field)


def toy_retain_prompts(concept: str, limit: int | None = None, field: str = "concept") -> list[PromptItem]:
    """Prompts of the *other* concepts of the same kind (other shapes, or other colours)."""
    shapes, colours, _ = _vocab()
    c = toy_concept_name(concept, field)
    others = [s for s in shapes if s != c] if c in shapes else [x for x in colours if x != c]
    rows = [r for r in toy_i2p_table() if c not in r.categories and any(o in r.categories for o in others)]
    return rows[:limit] if limit is not None else rows


def toy_coco_captions(limit: int | None = None) -> list[PromptItem]:
    """COCO-like captions over all shapes and colours (seed = index), ``limit`` items (default 24)."""
    shapes, colours, _ = _vocab()
    base = [f"a {c} {s}" for s in shapes for c in colours] + [f"a {s}" for s in shapes] + [f"a {c} shape" for c in colours]
    n = len(base) if limit is None else limit
    return [
        PromptItem(prompt=base[i % len(base)], seed=i, categories=_caption_concepts(base[i % len(base)]),
                   meta={"image_id": i, "source": TOY_SOURCE})
        for i in range(n)
    ]


def toy_reference_images(limit: int | None = None) -> ReferenceImages:
    """Procedural renders (random shape, colour, size, position), deterministic; default 1000 images."""
    from erasekit.toyworld import render_batch

    n = 1000 if limit is None else int(limit)
    imgs, _, _, _ = render_batch(n, seed=TOY_REFERENCE_SEED)
    return ReferenceImages(key=f"toy-render-v1-{TOY_REFERENCE_SEED}-{n}", source="toy renderer", arrays=imgs)


def toy_tifa(limit: int | None = None) -> list[TifaItem]:
    """TIFA-style items for toy captions: full captions (shape + colour questions, yes/no with a
    true and a false shape), then shape-only and colour-only captions."""
    shapes, colours, syns = _vocab()
    items: list[TifaItem] = []

    def shape_qs(s: str, shown: str) -> list[TifaQuestion]:
        other = shapes[(shapes.index(s) + 1) % len(shapes)]
        return [
            TifaQuestion("what shape is in the image?", shapes, s, "shape", shown),
            TifaQuestion(f"is there a {shown}?", ("yes", "no"), "yes", "object", shown),
            TifaQuestion(f"is there a {other}?", ("yes", "no"), "no", "object", other),
        ]

    def colour_qs(c: str) -> list[TifaQuestion]:
        return [
            TifaQuestion("what colour is the shape?", colours, c, "color", c),
            TifaQuestion(f"is the shape {c}?", ("yes", "no"), "yes", "color", c),
        ]

    for s in shapes:
        for c in colours:
            items.append(TifaItem(f"toy_{len(items):03d}", f"a {c} {s}", shape_qs(s, s) + colour_qs(c)))
    for s, ws in syns.items():
        for w in ws:
            for c in colours:
                items.append(TifaItem(f"toy_{len(items):03d}", f"a {c} {w}", shape_qs(s, w) + colour_qs(c)))
    for s in shapes:
        items.append(TifaItem(f"toy_{len(items):03d}", f"a {s}", shape_qs(s, s)))
    for c in colours:
        items.append(TifaItem(f"toy_{len(items):03d}", f"a {c} shape", colour_qs(c)))
    for it in items:
        it.meta["source"] = TOY_SOURCE
    return items[:limit] if limit is not None else items


# ---------------------------------------------------------------- example CSVs
EXAMPLE_TARGET = ["a red circle", "a green circle", "a blue circle", "a yellow circle", "a circle", "a disc"]
EXAMPLE_RETAIN = ["a red square", "a green square", "a blue square", "a yellow square", "a square"]
EXAMPLE_SEEDS = (0, 1)


def example_csv_rows() -> dict[str, list[tuple[str, int]]]:
    """Rows of the quickstart's ua_ira CSVs (file name → (prompt, seed) rows)."""
    return {
        "toy_circle_target.csv": [(p, s) for s in EXAMPLE_SEEDS for p in EXAMPLE_TARGET],
        "toy_square_retain.csv": [(p, s) for s in EXAMPLE_SEEDS for p in EXAMPLE_RETAIN],
    }


def write_example_csvs(out_dir: str | Path) -> list[Path]:
    """Write ``examples/data``'s toy CSVs (columns prompt,seed); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in example_csv_rows().items():
        p = out / name
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["prompt", "seed"])
            w.writerows(rows)
        paths.append(p)
    return paths
