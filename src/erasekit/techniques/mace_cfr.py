"""The CFR's inputs and its solve: prompt plan → text-encoder rows → refinement matrix.

:func:`build_plan` turns a :class:`~erasekit.techniques.mace_config.MACEConfig` and
a caption prior into erase pairs and prompts to keep; :func:`encode_plan` runs the
text encoder once per unique prompt; :func:`cfr_rows` aligns the token positions and
weighs the rows; :func:`solve_cfr` accumulates their Grams and returns the shared
``d × d`` matrix R (W' = W·R for every cross-attention K/V projection).
This module registers nothing; the technique is :mod:`erasekit.techniques.mace`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from erasekit.techniques.closed_form import (
    Encodings,
    RowBlock,
    align_positions,
    encode_texts,
    solve_rows,
)
from erasekit.techniques.mace_config import DEFAULT_TEMPLATES, MACEConfig, as_list

# ------------------------------------------------------------------ prompt plan


@dataclass
class PromptPlan:
    """Which prompts the CFR uses: erase pairs (with concept → with target) and prompts to keep."""

    erase: list[tuple[str, str]] = field(default_factory=list)
    preserve: list[str] = field(default_factory=list)
    prior: list[str] = field(default_factory=list)

    def unique_prompts(self) -> list[str]:
        seen: dict[str, None] = {}
        for a, b in self.erase:
            seen.setdefault(a)
            seen.setdefault(b)
        for p in (*self.preserve, *self.prior):
            seen.setdefault(p)
        return list(seen)


def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(word.strip())}(?![\w-])", re.IGNORECASE)


def _clean(prompt: str) -> str:
    return re.sub(r"\s+", " ", prompt).strip()


def concept_targets(config: MACEConfig) -> list[tuple[str, str]]:
    """(concept, target) per erased synonym; target '' = the neutral (empty) replacement."""
    concepts = [c.strip() for c in as_list(config.erase_concept)]
    froms = [f.strip() for f in as_list(config.erase_from)]
    if not froms:
        return [(c, "") for c in concepts]
    if len(froms) == 1:
        return [(c, froms[0]) for c in concepts]
    return list(zip(concepts, froms, strict=True))  # lengths checked in check_config


def build_plan(config: MACEConfig, prior: list[str]) -> PromptPlan:
    """Erase pairs from the templates (and from prior captions naming a concept); the rest is kept."""
    templates = list(config.templates or DEFAULT_TEMPLATES)
    pairs = concept_targets(config)
    plan = PromptPlan()
    seen: set[tuple[str, str]] = set()

    def add(a: str, b: str) -> None:
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            plan.erase.append((a, b))

    for concept, target in pairs:
        for t in templates:
            add(_clean(t.format(concept)), _clean(t.format(target)))
    patterns = [(_word_re(c), t) for c, t in pairs]
    for cap in prior:
        hits = [(rx, t) for rx, t in patterns if rx.search(cap)]
        if hits:
            repl = cap
            for rx, t in hits:
                repl = rx.sub(t, repl)
            add(_clean(cap), _clean(repl))
        else:
            plan.prior.append(cap)
    erased = {c.lower() for c, _ in pairs}
    for p in config.preserve_concepts:
        if p.strip().lower() in erased:
            continue  # a concept cannot be both erased and kept; erasing wins
        for t in templates:
            plan.preserve.append(_clean(t.format(p.strip())))
    return plan


# ------------------------------------------------------------------ rows from encodings


@dataclass
class EncodedPlan(Encodings):
    """Hidden states of every prompt of a plan (one encoder pass per unique prompt)."""

    plan: PromptPlan = field(default_factory=PromptPlan)


def encode_plan(pipe: Any, plan: PromptPlan, batch_size: int = 32) -> EncodedPlan:
    enc = encode_texts(pipe, plan.unique_prompts(), batch_size=batch_size)
    return EncodedPlan(index=enc.index, hidden=enc.hidden, tokens=enc.tokens, seconds=enc.seconds, plan=plan)


def cfr_rows(enc: EncodedPlan, alignment: str, preserve_scale: float, prior_scale: float, overshoot: float) -> list[RowBlock]:
    """The (x, y, weight) rows of the CFR objective.

    Erase pairs: aligned positions (see ``align_positions``), weight 1 each; the
    target is pushed past itself by ``overshoot`` (y + overshoot·(y − x)).
    Preserved concepts: every position of every prompt, weight ``preserve_scale``.
    Prior captions: every position, all together weighing ``prior_scale`` × the
    number of erase rows (so the prior's pull does not depend on the file size).
    """
    h = enc.hidden
    length = h.shape[1]
    src_idx: list[int] = []
    src_pos: list[int] = []
    tgt_idx: list[int] = []
    tgt_pos: list[int] = []
    for a, b in enc.plan.erase:
        ia, ib = enc.index[a], enc.index[b]
        for p, q in align_positions(enc.tokens[a], enc.tokens[b], length, alignment):
            src_idx.append(ia)
            src_pos.append(p)
            tgt_idx.append(ib)
            tgt_pos.append(q)
    blocks: list[RowBlock] = []
    n_erase = len(src_idx)
    if n_erase:
        x = h[torch.tensor(src_idx), torch.tensor(src_pos)]
        y = h[torch.tensor(tgt_idx), torch.tensor(tgt_pos)]
        if overshoot:
            y = y + overshoot * (y - x)  # past the target, away from the concept
        blocks.append(RowBlock(x, y, 1.0))
    if enc.plan.preserve and preserve_scale > 0:
        rows = h[torch.tensor([enc.index[p] for p in enc.plan.preserve])].reshape(-1, h.shape[-1])
        blocks.append(RowBlock(rows, None, preserve_scale))
    if enc.plan.prior and prior_scale > 0 and n_erase:
        rows = h[torch.tensor([enc.index[p] for p in enc.plan.prior])].reshape(-1, h.shape[-1])
        blocks.append(RowBlock(rows, None, prior_scale * n_erase / rows.shape[0]))
    return blocks


def config_rows(enc: EncodedPlan, config: MACEConfig) -> list[RowBlock]:
    """:func:`cfr_rows` with a config's options."""
    return cfr_rows(enc, config.alignment, config.preserve_scale, config.prior_scale, config.overshoot)



# the family-wide solve under MACE's historical name
solve_cfr = solve_rows


__all__ = [
    "EncodedPlan",
    "PromptPlan",
    "RowBlock",
    "build_plan",
    "cfr_rows",
    "concept_targets",
    "config_rows",
    "encode_plan",
    "solve_cfr",
]
