"""MACE closed-form refinement (CFR) of the UNet's cross-attention key/value projections.

Config fields follow the user-facing spec (shared/spec/mace-technique.md) exactly;
erasekit's extensions are optional and documented on :class:`MACEConfig`, the
solve and the checkpoint/fingerprint rules on :class:`MACE`, the full table of
measurements in ``README_mace.md`` next to this file.

Defaults and why (toy world, final shipped weights, erase "circle", judge-scored,
8 seeds per prompt; base: circle prompts 1.00 circles, other shapes 1.00 shape /
1.00 colour accuracy):

* ``alignment: following`` — the concept token *and every position after it*.
  A causal text encoder copies the concept into end-of-text and padding, and the
  UNet reads all positions: concept-token-only alignment leaves 0.75-1.00 circles.
* caption prior ``"auto"`` at ``prior_scale: 0.05`` — preservation is the real
  control knob: with no preserved captions the other shapes collapse to 0.38
  shape / 0.71 colour accuracy; any prior weight in 0.01-1 keeps them at 1.00.
  Preserving only the other shape *names* (``preserve_concepts``) keeps shapes
  (0.93-0.95) but loses colour (0.48-0.82): real captions are the better prior.
* ``overshoot: 1.0`` — a plain mapping is only as clean as its target: mapped to
  the neutral "a red", circle prompts draw what "a red" draws (0.45 vs the
  target's own 0.40 in this model). Mapping past the target, away from the
  concept (ESD's negative guidance η = 1, in text space) gives 0.00 circles with
  the other shapes at 1.00 / 1.00 and the circle prompts' colour kept (1.00);
  0.05-0.09 circles on earlier, weaker checkpoints where 0.5 left up to 0.15.
  ``overshoot: 0`` reproduces the paper's plain CFR mapping.
* ``lambda_cfr: 0.1`` (spec) — an absolute ridge as in MACE; negligible next to
  the Grams below ~100 on the toy world, fading the edit out from 10³ (0.10
  circles) to 10⁵ (1.00).
* ``erase_from: shape`` → 0.00 circles with colour accuracy 1.00; erasing
  ``["circle", "disc"]`` → 0.00 / 0.00; "circle" alone leaves "a disc" at 1.00.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from erasekit.config import TechniqueConfig
from erasekit.errors import ConfigError, TechniqueError
from erasekit.registry import TECHNIQUES
from erasekit.techniques.base import NON_SEMANTIC_FIELDS, Technique
from erasekit.techniques.checkpoint import (
    checkpoint_sha256,
    kv_digest,
    load_checkpoint,
    read_sidecar,
    sidecar_path,
)
from erasekit.techniques.closed_form import (
    Grams,
    align_positions,
    apply_refinement,
    cross_attention_kv,
    encode_prompts,
    refinement_matrix,
    unpadded_ids,
)
from erasekit.techniques.prior import GENERIC_CAPTIONS, captions_digest, read_caption_file
from erasekit.utils.atomic_io import atomic_write

log = logging.getLogger(__name__)

# Bump when the math changes: the fingerprint of a config must change with it.
CFR_VERSION = 1

# Prompts the erase concept is placed in. Short, generic, and varied in what
# precedes and follows the concept, so that the edit covers the concept's
# vectors in many contexts (a causal encoder writes the context into them).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a {}",
    "a photo of {}",
    "an image of {}",
    "a picture of {}",
    "a painting of {}",
    "a drawing of {}",
    "{} in a photo",
)

# Config fields that determine the CFR (replaced by the checkpoint's identity under load_path).
CFR_FIELDS: tuple[str, ...] = (
    "erase_concept",
    "erase_from",
    "lambda_cfr",
    "templates",
    "alignment",
    "preserve_concepts",
    "preserve_scale",
    "prior_captions",
    "prior_scale",
    "overshoot",
)

SIDECAR_FORMAT = "erasekit.mace.checkpoint/1"


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


class MACEConfig(TechniqueConfig):
    """MACE options. The first block is the spec's; the rest are erasekit extensions (all optional).

    Spec fields (names, types, defaults as in the spec's configuration reference):
    ``erase_concept``, ``erase_from``, ``lambda_cfr``, ``load_path``, ``save_path``,
    plus the shared ``num_inference_steps``, ``guidance_scale``, ``use_fp16``, ``device``.
    ``erase_from`` (``null``: the concept is dropped from the prompt, the spec's
    neutral target; a string: the concept is replaced by it, "a red circle" →
    "a red shape"; a list: one target per ``erase_concept`` entry).

    Extensions (defaults measured on the toy world, see the module docstring):

    * ``templates`` — prompts the concept is put in (``{}`` = the concept). Default
      :data:`DEFAULT_TEMPLATES`.
    * ``alignment`` — which token positions the CFR moves (see
      :func:`erasekit.techniques.closed_form.align_positions`): ``following`` (default:
      the concept and every position after it — in a causal text encoder they all
      carry the concept), ``prefix_suffix`` (the official MACE CFR alignment:
      context tokens only, the concept tokens left to a LoRA stage erasekit does
      not run) or ``concept`` (the concept tokens only).
    * ``overshoot`` — targets become ``t + overshoot·(t − e)``: past the target,
      away from the concept (default 1.0; 0 = MACE's plain mapping).
    * ``preserve_concepts`` / ``preserve_scale`` — concepts to keep unchanged, put
      in the same templates; each of their vectors weighs ``preserve_scale`` times
      an erased vector.
    * ``prior_captions`` / ``prior_scale`` — a caption prior: ``"auto"`` (the base
      model's own caption set: the toy world's training captions for the toy
      model, erasekit's built-in COCO-like list otherwise), a text file with one
      caption per line, or ``null`` for none. Captions that mention an erased
      concept become erase prompts (the concept replaced by the target); all
      others are kept, together weighing ``prior_scale`` times the erase set,
      whatever the number of captions.
    """

    erase_concept: str | list[str] = Field("nudity", description="concept(s) to erase; a list = synonyms erased jointly")
    erase_from: str | list[str] | None = Field(None, description="broader concept the erased one dissolves into (default: the empty prompt)")
    lambda_cfr: float = Field(0.1, gt=0.0, description="CFR regularisation; higher = more conservative")
    load_path: str | None = Field(None, description=".pt UNet state dict from an earlier run; skips the CFR")
    save_path: str | None = Field(None, description="where to save the edited UNet state dict (.pt)")

    templates: list[str] | None = Field(None, description="prompts with '{}' for the concept (default: built-in list)")
    alignment: Literal["following", "prefix_suffix", "concept"] = Field(
        "following", description="token positions the CFR moves: concept + following (default), MACE's prefix/suffix, or concept only"
    )
    preserve_concepts: list[str] = Field(default_factory=list, description="concepts to keep, placed in the same templates")
    preserve_scale: float = Field(0.1, ge=0.0, description="weight of each preserved-concept vector relative to an erased vector")
    prior_captions: str | None = Field("auto", description="'auto', a caption file (one per line) or null")
    prior_scale: float = Field(0.05, ge=0.0, description="total weight of the caption prior relative to the erase set")
    overshoot: float = Field(1.0, ge=0.0, le=10.0, description="map to target + overshoot·(target − concept): past the target, away from the concept")

    @field_validator("erase_concept")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        items = _as_list(v)
        if not items or any(not s.strip() for s in items):
            raise ValueError("erase_concept must be a non-empty string or a non-empty list of non-empty strings")
        return v

    @field_validator("erase_from")
    @classmethod
    def _from_non_empty(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is not None and (not _as_list(v) or any(not s.strip() for s in _as_list(v))):
            raise ValueError("erase_from must be null, a non-empty string, or a list of non-empty strings")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("templates must not be empty (use null for the default list)")
        for t in v:
            if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
                raise ValueError(f"each template needs exactly one '{{}}' and no other braces, got {t!r}")
        return v


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
    concepts = [c.strip() for c in _as_list(config.erase_concept)]
    froms = [f.strip() for f in _as_list(config.erase_from)]
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
class EncodedPlan:
    """Hidden states of every prompt of a plan (one encoder pass per unique prompt)."""

    plan: PromptPlan
    index: dict[str, int]
    hidden: torch.Tensor  # (n_prompts, L, d)
    tokens: dict[str, list[int]]
    seconds: float


def encode_plan(text_encoder: Any, tokenizer: Any, plan: PromptPlan, batch_size: int = 32) -> EncodedPlan:
    t0 = time.perf_counter()
    prompts = plan.unique_prompts()
    _, hidden = encode_prompts(text_encoder, tokenizer, prompts, batch_size=batch_size)
    tokens = {p: unpadded_ids(tokenizer, p) for p in prompts}
    return EncodedPlan(plan=plan, index={p: i for i, p in enumerate(prompts)}, hidden=hidden, tokens=tokens, seconds=time.perf_counter() - t0)


@dataclass
class RowBlock:
    """Rows x (n × d) that should act like y (None = stay as they are), each weighing ``weight``."""

    x: torch.Tensor
    y: torch.Tensor | None
    weight: float


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


def solve_cfr(blocks: list[RowBlock], lam: float, device: torch.device | None = None) -> tuple[torch.Tensor, Grams]:
    """Accumulate the Grams of all rows (float64) and return R (d × d) with W' = W·R for every layer."""
    d = blocks[0].x.shape[-1]
    dev = device or blocks[0].x.device
    if dev.type == "mps":  # no float64 on MPS
        dev = torch.device("cpu")
    grams = Grams(d, device=dev)
    for b in blocks:
        grams.add(b.x, b.y, b.weight)
    return refinement_matrix(grams, lam), grams


# ------------------------------------------------------------------ files


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    import erasekit

    return {"erasekit": erasekit.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def _try_base_fingerprint(model_id: str) -> str | None:
    try:
        from erasekit.models.loading import base_fingerprint

        return base_fingerprint(model_id)
    except Exception:  # noqa: BLE001 - any failure just means "not identifiable by id"
        return None


def resolve_prior(config: MACEConfig) -> tuple[list[str], str]:
    """The caption prior as a list, and a short label of where it came from."""
    src = config.prior_captions
    if src is None:
        return [], "none"
    if src == "auto":
        from erasekit.world import world_for

        world = world_for(config.model_id)
        captions = world.prior_captions()
        if captions is not None:
            return captions, f"auto:{world.name} captions"
        return list(GENERIC_CAPTIONS), "auto:built-in generic captions"
    return read_caption_file(src), f"file:{src}"


# ------------------------------------------------------------------ the technique


@TECHNIQUES.register("mace", description="MACE closed-form refinement of cross-attention K/V (seconds, deterministic).")
class MACE(Technique):
    """MACE closed-form refinement of cross-attention K/V (seconds, deterministic).

    What it does: for every cross-attention ``attn2.to_k`` / ``attn2.to_v`` (32 in
    SD v1.4; ``to_q``/``to_out`` untouched) it solves

        W' = argmin Σ‖W' eᵢ − W tᵢ‖² + λ‖W' − W‖² + Σ αⱼ‖W' pⱼ − W pⱼ‖²

    where eᵢ are text-encoder vectors (last hidden state, all 77 positions) of
    prompts with the concept, tᵢ the vectors of the same prompts with the concept
    replaced (by ``erase_from`` or, by default, by nothing), and pⱼ vectors to keep.
    Every target is W·x, so W' = W·R with one d×d matrix R shared by all layers:
    one float64 Gram accumulation, one Cholesky solve, 32 matmuls.

    Fingerprint: a CFR run is identified by its resolved CFR options (templates
    and caption prior by content, plus the algorithm version). With ``load_path``
    the CFR options say nothing about the weights, so the identity comes from the
    checkpoint file: its sha256 is computed (seconds even for SD) and, if the
    sidecar written by ``save_path`` records that very sha256, the sidecar's CFR
    identity is used — a load run then shares its cached images with the run that
    saved the checkpoint; otherwise the file hash itself is the identity. Trusting
    the sidecar without hashing would let an edited or replaced ``.pt`` reuse
    images of other weights.

    Checkpoints: ``save_path`` gets the full UNet state dict
    (``torch.save(unet.state_dict())``, as the spec says, in the run's precision)
    written atomically, plus ``<save_path>.json`` (format, checkpoint sha256, base
    identities, config, CFR identity, versions). ``load_path`` is read with
    ``torch.load(weights_only=True)`` (a pickle that would run code is refused),
    must have exactly the base UNet's keys and shapes, and skips the CFR; a
    sidecar describing a different base model gives a warning.
    """

    Config = MACEConfig

    @classmethod
    def concepts(cls, config: MACEConfig) -> list[str]:  # type: ignore[override]
        return _as_list(config.erase_concept)

    @classmethod
    def check_config(cls, config: MACEConfig, path: str) -> None:  # type: ignore[override]
        if config.load_path and config.save_path:
            if Path(config.load_path).expanduser().resolve() == Path(config.save_path).expanduser().resolve():
                raise ConfigError(f"{path}.save_path", "load_path and save_path name the same file", "use save_path on the first run and load_path afterwards, never both on one file")
        if config.load_path and not Path(config.load_path).expanduser().is_file():
            raise ConfigError(f"{path}.load_path", f"file not found: {config.load_path}", "point it at a .pt saved by an earlier run with save_path, or remove it to run the CFR")
        froms = _as_list(config.erase_from)
        n = len(_as_list(config.erase_concept))
        if len(froms) > 1 and len(froms) != n:
            raise ConfigError(f"{path}.erase_from", f"a list of {len(froms)} targets for {n} erase_concept entries", "give one erase_from string for all synonyms, or one per erase_concept entry")
        if config.prior_captions not in (None, "auto") and not Path(config.prior_captions).expanduser().is_file():
            raise ConfigError(f"{path}.prior_captions", f"file not found: {config.prior_captions}", "give a UTF-8 text file with one caption per line, 'auto', or null")

    # -------------------------------------------------------------- identity

    def cfr_payload(self) -> dict[str, Any]:
        """What determines the CFR's weights, with defaults and files resolved to their content."""
        cfg = self.config
        prior, label = resolve_prior(cfg)
        return {
            "cfr_version": CFR_VERSION,
            "erase": concept_targets(cfg),
            "lambda_cfr": cfg.lambda_cfr,
            "templates": list(cfg.templates or DEFAULT_TEMPLATES),
            "alignment": cfg.alignment,
            "preserve_concepts": list(cfg.preserve_concepts),
            "preserve_scale": cfg.preserve_scale,
            "prior": {"source": label.split(":")[0], "digest": captions_digest(prior), "n": len(prior)},
            "prior_scale": cfg.prior_scale,
            "overshoot": cfg.overshoot,
        }

    def fingerprint_payload(self) -> dict[str, Any]:
        d = self.config.model_dump(mode="json")
        for k in (*NON_SEMANTIC_FIELDS, *CFR_FIELDS):
            d.pop(k, None)
        d["cfr"] = self._checkpoint_identity(self.config.load_path) if self.config.load_path else self.cfr_payload()
        return d

    @staticmethod
    def _checkpoint_identity(load_path: str) -> dict[str, Any]:
        sha = checkpoint_sha256(load_path)
        side = sidecar_path(load_path)
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and meta.get("checkpoint_sha256") == sha and isinstance(meta.get("cfr_payload"), dict):
            return meta["cfr_payload"]
        return {"checkpoint_sha256": sha}

    # -------------------------------------------------------------- apply

    def apply(self, pipe: Any) -> dict[str, Any]:
        unet = pipe.unet
        layers = cross_attention_kv(unet)
        if not layers:
            raise TechniqueError("MACE: the UNet has no cross-attention key/value projections (attn2.to_k / attn2.to_v)")
        if self.config.load_path:
            if self.config.save_path:
                log.info("MACE: save_path ignored because load_path is set (the CFR does not run)")
            return self._load(unet, layers)
        return self._run_cfr(pipe, unet, layers)

    def _run_cfr(self, pipe: Any, unet: Any, layers: list[tuple[str, torch.nn.Linear]]) -> dict[str, Any]:
        cfg = self.config
        d_text = pipe.text_encoder.config.hidden_size
        bad = [n for n, lin in layers if lin.in_features != d_text]
        if bad:
            raise TechniqueError(f"MACE: {bad[0]} reads {layers[0][1].in_features}-dim context but the text encoder outputs {d_text}")
        base_kv = kv_digest(layers)
        prior, prior_label = resolve_prior(cfg)
        plan = build_plan(cfg, prior)
        if not plan.erase:
            raise TechniqueError("MACE: no erase prompts (each template with the concept equals the one with its target)")
        enc = encode_plan(pipe.text_encoder, pipe.tokenizer, plan)
        t0 = time.perf_counter()
        blocks = config_rows(enc, cfg)
        r, grams = solve_cfr(blocks, cfg.lambda_cfr)
        apply_refinement([lin for _, lin in layers], r)
        if unet.device.type == "cuda":
            torch.cuda.synchronize(unet.device)
        t_solve = time.perf_counter() - t0
        log.info("MACE: %d erase / %d kept prompts, %d rows; text %.2fs, solve %.3fs, %d projections edited",
                 len(plan.erase), len(plan.preserve) + len(plan.prior), grams.n_pairs, enc.seconds, t_solve, len(layers))
        details: dict[str, Any] = {
            "cfr_ran": True,
            "loaded_from": None,
            "layers_edited": len(layers),
            "seconds_text_encoding": round(enc.seconds, 4),
            "seconds_solve": round(t_solve, 4),
            "erase_pairs": [list(p) for p in plan.erase],
            "preserve_prompts": len(plan.preserve),
            "prior": {"source": prior_label, "kept": len(plan.prior)},
            "rows": grams.n_pairs,
            "alignment": cfg.alignment,
            "saved_path": None,
        }
        if cfg.save_path:
            details["saved_path"] = str(self._save(unet, layers, base_kv))
        return details

    # -------------------------------------------------------------- save / load

    def _save(self, unet: Any, layers: list[tuple[str, torch.nn.Linear]], base_kv: str) -> Path:
        cfg = self.config
        path = Path(cfg.save_path).expanduser()  # type: ignore[arg-type]
        state = unet.state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        sha = checkpoint_sha256(path)
        base_fp = _try_base_fingerprint(cfg.model_id)
        meta = {
            "format": SIDECAR_FORMAT,
            "checkpoint": path.name,
            "checkpoint_sha256": sha,
            "model_id": cfg.model_id,
            "base_fingerprint": base_fp,
            "base_kv_digest": base_kv,
            "edited_kv_digest": kv_digest(layers),
            "fingerprint": self.fingerprint(base_fp, "mace") if base_fp else None,
            "cfr_payload": self.cfr_payload(),
            "config": cfg.model_dump(mode="json"),
            "dtype": str(next(unet.parameters()).dtype).replace("torch.", ""),
            "layers_edited": [n for n, _ in layers],
            "versions": _versions(),
        }
        text = json.dumps(meta, indent=2, sort_keys=True)
        atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        log.info("MACE: saved edited UNet to %s (+ %s)", path, sidecar_path(path).name)
        return path

    def _load(self, unet: Any, layers: list[tuple[str, torch.nn.Linear]]) -> dict[str, Any]:
        cfg = self.config
        path = Path(cfg.load_path).expanduser()  # type: ignore[arg-type]
        t0 = time.perf_counter()
        warnings: list[str] = []
        base_kv = kv_digest(layers)
        before = {name: lin.weight.detach().to("cpu", torch.float32).clone() for name, lin in layers}
        state = load_checkpoint(path)
        expected = unet.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise TechniqueError(
                f"MACE: {path} does not fit this UNet ({len(missing)} missing keys, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); it was saved from a different architecture. "
                "Load it with the base model it was made for, or remove load_path to recompute the CFR"
            )
        shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
        if shapes:
            k, got, want = shapes[0]
            raise TechniqueError(
                f"MACE: {path} does not fit this UNet: {len(shapes)} tensors have other shapes (e.g. {k}: {got} in the file, {want} in the model); "
                "it was saved from a different architecture. Load it with the base model it was made for, or remove load_path"
            )
        meta = read_sidecar(path)
        if meta is None:
            warnings.append(f"no sidecar {sidecar_path(path).name}: cannot check which base model this checkpoint was made from")
        else:
            cur_fp = _try_base_fingerprint(cfg.model_id)
            if meta.get("base_kv_digest") not in (None, base_kv) or (meta.get("base_fingerprint") and cur_fp and meta["base_fingerprint"] != cur_fp):
                warnings.append(
                    f"checkpoint {path.name} was made from a different base model ({meta.get('model_id')!r}, "
                    f"fingerprint {meta.get('base_fingerprint')}) than the one loaded ({cfg.model_id!r}, fingerprint {cur_fp})"
                )
        for w in warnings:
            log.warning("MACE: %s", w)
        unet.load_state_dict(state, strict=True)
        changed = sum(1 for name, lin in layers if not torch.equal(lin.weight.detach().to("cpu", torch.float32), before[name]))
        return {
            "cfr_ran": False,
            "loaded_from": str(path),
            "layers_edited": changed,
            "seconds_load": round(time.perf_counter() - t0, 4),
            "warnings": warnings,
            "saved_path": None,
        }


__all__ = [
    "CFR_VERSION",
    "DEFAULT_TEMPLATES",
    "MACE",
    "MACEConfig",
    "PromptPlan",
    "build_plan",
    "cfr_rows",
    "config_rows",
    "encode_plan",
    "load_checkpoint",
    "resolve_prior",
    "sidecar_path",
    "solve_cfr",
]
