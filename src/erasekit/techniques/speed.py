"""SPEED: null-space constrained concept erasure (Li et al., ICLR 2026), as its official code computes it.

Objective, per edited projection ``W`` (``attn2.to_v`` by default; ``params: K`` /
``KV`` add or switch to ``attn2.to_k``; official ``train_erase_null.py``): an
update restricted to the null space P of the retain set's text rows,

    min_Δ  ‖(W + ΔP)C₀ − W C₁‖² + α‖ΔP‖²   subject to  ΔP K₂ ≈ 0,

where C₀ are the erased concepts' rows, C₁ their guides' (the official "anchor"),
K₂ the "invariants" (the empty prompt's BOS row and 3 k-means centres of its
other 76 rows) and the constraint is softened by λ (``lamb``). Closed form:
``Δ = W G P [I − M K₂ (K₂ᵀ P M K₂ + λI)⁻¹ K₂ᵀ P] M`` with ``G = C₁C₀ᵀ − C₀C₀ᵀ``
(means over concepts) and ``M = (C₀C₀ᵀ P + αI)⁻¹``.

P is built per layer: Influence-based Prior Filtering keeps the retain rows that
the plain erase update ``E = W G (I + C₀C₀ᵀ)⁻¹`` moves more than average; Directed
Prior Augmentation adds ``aug_num`` copies of each, perturbed along W's smallest
singular direction, keeping those moved more than average (per chunk of 128);
P projects onto the eigenvectors of the rows' mean Gram with eigenvalue below
``threshold``.

Rows (official): the last word token of each concept, guide and retain text
(``attention_mask.sum() - 2``; BOS for ``""``); when ``erase_concept`` is exactly
``"nudity"``, rows 1…76 of concept and guide (``token_rule: auto``; ``last_token`` /
``all_tokens`` force one rule for any concept). Retain texts that contain an erased
concept as a whole word are dropped.

Defaults (official, ``train_erase_null.py``): guide ``""``, ``params: V``,
``aug_num`` 10, ``threshold`` 0.1, ``retain_scale`` α 1.0, ``lamb`` 0, IPF on,
``seed`` 0. Published: instances/styles retain a CSV column of concept names
(``prior_captions: data/instance.csv``, ``retain_column: concept``); celebrities
``threshold: 1e-4, retain_scale: 0.05, disable_filter: true``; nudity
``retain_scale: 0.7, lamb: 0.5`` with the null retain set.

Differences from the official code, and why:

* ``prior_captions`` defaults to ``"auto"`` (the base model's caption prior: the
  toy world's captions, erasekit's built-in caption list for SD), not the
  official null retain set: with the null set and λ = 0 (both official defaults)
  the invariants lie in the retain span and ``K₂ᵀPMK₂`` is singular, so the
  official defaults divide by ≈ 0. ``prior_captions: null`` gives the official
  null set; a singular system is refused with a message instead of writing NaNs;
* everything is computed in float64 (official: float32 with explicit inverses);
* the random draws (k-means initialisation, retain shuffle, DPA noise) come from
  one ``torch.Generator`` seeded with ``seed`` in a documented order — k-means
  init, shuffle, then per layer / chunk of 128 / mini-batch of 8 / copy — instead
  of numpy's and torch's global generators, so a run is reproducible on any
  device; the algorithm is the same, the particular draws are not.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from erasekit.errors import ConfigError, TechniqueError
from erasekit.registry import TECHNIQUES
from erasekit.techniques.closed_form import Encodings, cross_attention_kv, encode_texts
from erasekit.techniques.editing import EditConfig, WeightEdit, as_list, check_guide_list
from erasekit.techniques.prior import caption_prior, captions_digest

log = logging.getLogger(__name__)

SPEED_VERSION = 1
RETAIN_CHUNK = 128  # official chunk_size
DPA_MINI_BATCH = 8  # official mini_batch
KMEANS_CLUSTERS = 3
KMEANS_TOL = 1e-4  # kmeans_pytorch's default tolerance on the squared centre shift
KMEANS_MAX_ITER = 1000

SPEED_FIELDS: tuple[str, ...] = (
    "erase_concept", "guide_concept", "prior_captions", "retain_column", "params", "aug_num",
    "threshold", "retain_scale", "lamb", "disable_filter", "seed", "token_rule",
)


class SPEEDConfig(EditConfig):
    """SPEED options; names follow erasekit (``guide_concept`` is the official ``anchor_concepts``)."""

    key_aliases: ClassVar[dict[str, str]] = {"anchor_concept": "guide_concept", "anchor_concepts": "guide_concept"}

    guide_concept: str | list[str] = Field("", description="what each concept maps to (official 'anchor'; '' = null)")
    prior_captions: str | None = Field("auto", description="retain set: 'auto' (caption prior), a .csv (retain_column) or text file, null = official null rows")
    retain_column: str | list[str] = Field("concept", description="CSV column(s) of retain texts (official --heads)")
    params: Literal["V", "K", "KV"] = Field("V", description="edit attn2.to_v (V), to_k (K) or both (KV)")
    aug_num: int = Field(10, ge=0, le=1000, description="DPA copies per retain row (0 = no IPF/DPA)")
    threshold: float = Field(0.1, gt=0.0, le=1e6, description="eigenvalue cut of the retain Gram's null space")
    retain_scale: float = Field(1.0, gt=0.0, le=1e6, description="α: ridge on the update")
    lamb: float = Field(0.0, ge=0.0, le=1e6, description="λ: softness of the invariant constraint (0 = exact)")
    disable_filter: bool = Field(False, description="keep every retain row (no IPF)")
    seed: int = Field(0, ge=0, description="seed of k-means, shuffle and DPA noise")
    token_rule: Literal["auto", "last_token", "all_tokens"] = Field(
        "auto", description="concept/guide rows: last_token, all_tokens (rows 1…L-1), or auto = the official rule (all_tokens only for 'nudity')")

    @field_validator("guide_concept", "retain_column")
    @classmethod
    def _non_empty_list(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("give a string or a non-empty list of strings")
        return v


def _word(concept: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(concept.lower()) + r"\b")


def read_retain(config: SPEEDConfig, field: str = "technique.config.prior_captions") -> tuple[list[str], str]:
    """Retain texts and their source label. A ``.csv`` is read column by column (unique values, file order)."""
    src = config.prior_captions
    if src is not None and src != "auto" and Path(src).suffix.lower() == ".csv":
        from erasekit.datasets.io import read_csv

        cols = [c.strip().lower() for c in as_list(config.retain_column)]
        _, rows = read_csv(src, field, "retain CSV", required=tuple(cols))
        texts: list[str] = []
        for c in cols:
            texts.extend(dict.fromkeys(r[c] for r in rows if r[c]))
        return texts, f"file:{src}"
    if src is None:
        return [""], "null"
    return caption_prior(config.model_id, src, field)


def filter_retain(texts: list[str], concepts: list[str]) -> list[str]:
    """Drop texts naming an erased concept as a whole word (official), then duplicates (official asserts there are none)
    and empty texts (an empty CSV cell is NaN in the official pandas reading; its last-token row would be BOS, one of
    the invariants, which makes the constraint singular)."""
    pats = [_word(c) for c in concepts]
    kept = [t for t in texts if t.strip() and not any(p.search(t.lower()) for p in pats)]
    return [t for t in dict.fromkeys(kept) if t not in concepts]


def kmeans(x: torch.Tensor, k: int, gen: torch.Generator, tol: float = KMEANS_TOL, max_iter: int = KMEANS_MAX_ITER) -> torch.Tensor:
    """Lloyd's k-means as ``kmeans_pytorch`` runs it: k distinct rows as the start, squared
    Euclidean assignment, stop when (Σ centre shifts)² < tol; an empty cluster takes a random row."""
    n = x.shape[0]
    centres = x[torch.randperm(n, generator=gen)[:k]].clone()
    for _ in range(max_iter):
        assign = torch.cdist(x, centres).argmin(dim=1)
        prev = centres.clone()
        for i in range(k):
            members = x[assign == i]
            if members.shape[0] == 0:
                members = x[torch.randint(n, (1,), generator=gen)]
            centres[i] = members.mean(dim=0)
        if float((centres - prev).norm(dim=1).sum()) ** 2 < tol:
            break
    return centres


def uses_all_tokens(token_rule: str, concepts: list[str]) -> bool:
    """The official rule: every row but BOS when the concept list is exactly ["nudity"], else the last word token."""
    return token_rule == "all_tokens" or (token_rule == "auto" and concepts == ["nudity"])


def concept_grams(enc: Encodings, concepts: list[str], guides: list[str], all_tokens: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(C₀C₀ᵀ, C₁C₀ᵀ): means over concepts of Σ t tᵀ and Σ a tᵀ (float64); rows 1… of each with ``all_tokens``."""
    tt, at = [], []
    for c, g in zip(concepts, guides, strict=True):
        if all_tokens:
            t, a = enc.rows(c)[1:], enc.rows(g)[1:]
        else:
            t, a = enc.last(c), enc.last(g)
        t, a = t.to("cpu", torch.float64), a.to("cpu", torch.float64)
        tt.append(t.T @ t)
        at.append(a.T @ t)
    return torch.stack(tt).mean(0), torch.stack(at).mean(0)


def perturbed_rows(rows: torch.Tensor, p0: torch.Tensor, e: torch.Tensor, aug_num: int, gen: torch.Generator) -> torch.Tensor:
    """DPA: ``aug_num`` copies of each row moved along p0's direction, kept when E moves them more than the mean."""
    outs = []
    for i in range(0, rows.shape[0], DPA_MINI_BATCH):
        mini = rows[i : i + DPA_MINI_BATCH]
        for _ in range(aug_num):
            outs.append(mini + torch.randn(mini.shape, generator=gen, dtype=torch.float64) @ p0)
    out = torch.cat(outs)
    norms = (out @ e.T).norm(dim=1)
    return out[norms > norms.mean()]


def speed_delta(w: torch.Tensor, c00: torch.Tensor, c10: torch.Tensor, retain: torch.Tensor, k2: torch.Tensor,
                config: SPEEDConfig, gen: torch.Generator, name: str = "layer") -> torch.Tensor:
    """The update Δ of one layer (float64), SPEED's IPF → DPA → null space → constrained solve."""
    d = w.shape[1]
    eye = torch.eye(d, dtype=torch.float64)
    g = c10 - c00
    e = w @ g @ torch.linalg.inv(eye + c00)
    v = torch.linalg.svd(w, full_matrices=False).Vh[-1:]  # smallest returned singular direction
    p0 = v.T @ v
    rows = retain
    if config.aug_num > 0 and not config.disable_filter:
        n0 = (retain @ e.T).norm(dim=1)
        rows = retain[n0 > n0.mean()]
    total = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for j in range(0, rows.shape[0], RETAIN_CHUNK):
        chunk = rows[j : j + RETAIN_CHUNK]
        if config.aug_num > 0:
            chunk = torch.cat([chunk, perturbed_rows(chunk, p0, e, config.aug_num, gen)])
        count += chunk.shape[0]
        total += chunk.T @ chunk
    if count == 0:
        raise TechniqueError(f"SPEED: no retain rows left for {name} (give more retain texts, or set disable_filter: true)")
    evals, evecs = torch.linalg.eigh(total / count)
    u = evecs[:, evals < config.threshold]
    p = u @ u.T
    m = torch.linalg.inv(c00 @ p + config.retain_scale * eye)
    inner = k2.T @ p @ m @ k2 + config.lamb * torch.eye(k2.shape[1], dtype=torch.float64)
    cond = float(torch.linalg.cond(inner))
    if not cond < 1e12:
        raise TechniqueError(
            f"SPEED: the invariant constraint of {name} is singular (condition number {cond:.2g}): the empty prompt's rows are "
            "(nearly) outside the retain null space. Set lamb > 0 (the official nudity setting uses 0.5), raise threshold, or retain other texts"
        )
    return w @ g @ p @ (eye - m @ k2 @ torch.linalg.solve(inner, k2.T @ p)) @ m


def edited_layers(unet: Any, params: str) -> list[tuple[str, torch.nn.Linear]]:
    want = {"V": ("to_v",), "K": ("to_k",), "KV": ("to_k", "to_v")}[params]
    return [(n, lin) for n, lin in cross_attention_kv(unet) if n.rsplit(".", 1)[-1] in want]


@TECHNIQUES.register("speed", description="SPEED: null-space constrained closed-form erasure of attn2.to_v (Li et al., ICLR 2026).")
class SPEED(WeightEdit):
    """SPEED: null-space constrained closed-form erasure of attn2.to_v (Li et al., ICLR 2026)."""

    Config = SPEEDConfig
    label = "SPEED"
    edit_fields = SPEED_FIELDS
    config: SPEEDConfig

    @classmethod
    def check_config(cls, config: SPEEDConfig, path: str) -> None:  # type: ignore[override]
        super().check_config(config, path)
        concepts = as_list(config.erase_concept)
        check_guide_list(as_list(config.guide_concept), len(concepts), f"{path}.guide_concept")
        if config.load_path:
            return
        texts, _ = read_retain(config, f"{path}.prior_captions")
        if not filter_retain(texts, [c.strip() for c in concepts]) and config.prior_captions is not None:
            raise ConfigError(f"{path}.prior_captions", "no retain text is left after dropping those that name an erased concept",
                              "give retain texts that do not mention the erased concepts, or null for the official null set")

    def _inputs(self) -> tuple[list[str], list[str], list[str], str]:
        cfg = self.config
        concepts = [c.strip() for c in as_list(cfg.erase_concept)]
        guides = [g.strip() for g in as_list(cfg.guide_concept)]
        if len(guides) == 1:
            guides = guides * len(concepts)
        texts, label = read_retain(cfg)
        return concepts, guides, filter_retain(texts, concepts) if texts != [""] else [""], label

    def edit_payload(self) -> dict[str, Any]:
        cfg = self.config
        concepts, guides, retain, label = self._inputs()
        return {
            "speed_version": SPEED_VERSION,
            "erase": [[c, g] for c, g in zip(concepts, guides, strict=True)],
            "retain": {"source": label.split(":")[0], "digest": captions_digest(retain), "n": len(retain)},
            "all_tokens": uses_all_tokens(cfg.token_rule, concepts),
            **{k: getattr(cfg, k) for k in ("params", "aug_num", "threshold", "retain_scale", "lamb", "disable_filter", "seed")},
        }

    def edit(self, pipe: Any) -> dict[str, Any]:
        cfg = self.config
        layers = edited_layers(pipe.unet, cfg.params)
        concepts, guides, retain, label = self._inputs()
        if not retain:
            raise TechniqueError("SPEED: no retain text left after dropping those that name an erased concept")
        null_rows = retain == [""]
        enc = encode_texts(pipe, ["", *concepts, *guides, *retain])
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed)
        empty = enc.rows("").to("cpu", torch.float64)
        k2 = torch.cat([empty[:1], kmeans(empty[1:], KMEANS_CLUSTERS, gen)]).T  # d × 4
        c00, c10 = concept_grams(enc, concepts, guides, uses_all_tokens(cfg.token_rule, concepts))
        rows = empty[1:] if null_rows else torch.cat([enc.last(t) for t in retain]).to("cpu", torch.float64)
        rows = rows[torch.randperm(rows.shape[0], generator=gen)]
        deltas = [speed_delta(lin.weight.detach().to("cpu", torch.float64), c00, c10, rows, k2, cfg, gen, name) for name, lin in layers]
        with torch.no_grad():
            for (_, lin), delta in zip(layers, deltas, strict=True):
                w = lin.weight
                w.copy_((w.detach().to("cpu", torch.float64) + delta).to(w.device, w.dtype))
        t_edit = time.perf_counter() - t0
        log.info("SPEED: %d concepts, %d retain rows (%s); text %.2fs, edit %.3fs, %d projections edited",
                 len(concepts), rows.shape[0], label, enc.seconds, t_edit, len(layers))
        return {
            "layers_edited": len(layers),
            "seconds_text_encoding": round(enc.seconds, 4),
            "seconds_edit": round(t_edit, 4),
            "erase_pairs": [[c, g] for c, g in zip(concepts, guides, strict=True)],
            "retain": {"source": label, "rows": int(rows.shape[0])},
            "params": cfg.params,
        }


__all__ = ["SPEED", "SPEEDConfig", "concept_grams", "uses_all_tokens", "filter_retain", "kmeans", "perturbed_rows", "read_retain", "speed_delta"]
