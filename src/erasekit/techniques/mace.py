"""MACE closed-form refinement (CFR) of the UNet's cross-attention key/value projections.

Config fields follow the user-facing spec (shared/spec/mace-technique.md) exactly;
erasekit's extensions are optional and documented on :class:`MACEConfig`, the
solve and the checkpoint/fingerprint rules on :class:`MACE`, the full table of
measurements in ``README_mace.md`` next to this file.

The options and the measurements behind their defaults are in
:mod:`erasekit.techniques.mace_config`; the prompt plan, rows and solve in
:mod:`erasekit.techniques.mace_cfr`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from erasekit.errors import ConfigError, TechniqueError
from erasekit.models.conditioning import context_dim
from erasekit.registry import TECHNIQUES
from erasekit.techniques.closed_form import (
    Grams,
    apply_refinement,
    cross_attention_kv,
    encode_texts,
    refinement_matrix,
)
from erasekit.techniques.editing import WeightEdit, check_guide_list
from erasekit.techniques.mace_cfr import (
    PromptPlan,
    build_plan,
    cfr_rows,
    concept_targets,
    config_rows,
    encode_plan,
    solve_cfr,
)
from erasekit.techniques.mace_config import (
    DEFAULT_TEMPLATES,
    OFFICIAL_AUG_LENGTH,
    OFFICIAL_FIXED,
    OFFICIAL_TEMPLATES,
    MACEConfig,
    as_list,
)
from erasekit.techniques.prior import caption_prior, captions_digest, read_caption_file

log = logging.getLogger(__name__)

# Bump when the math changes: the fingerprint of a config must change with it.
CFR_VERSION = 1

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
    "recipe",
    "concept_type",
    "train_preserve_scale",
)


def official_templates(config: MACEConfig) -> tuple[str, ...]:
    """The official augmentation: the first 30 templates of the concept type's list."""
    return OFFICIAL_TEMPLATES[config.concept_type][:OFFICIAL_AUG_LENGTH]


def official_plan(config: MACEConfig) -> PromptPlan:
    """Every concept in every official template, paired with the same template holding its mapping
    concept (``erase_from``; '' when unset). No pair is dropped or merged, as in the official code."""
    plan = PromptPlan()
    for concept, target in concept_targets(config):
        for t in official_templates(config):
            plan.erase.append((t.format(concept), t.format(target)))
    return plan


def official_prior(config: MACEConfig) -> list[str]:
    """The caption prior of ``official_cfr``: every caption of the file (a COCO captions CSV / JSON,
    or a text file), none filtered; 'auto' = the base model's own caption set; null = none."""
    if config.prior_captions is None:
        return []
    if config.prior_captions == "auto":
        return caption_prior(config.model_id, "auto")[0]
    return read_prior_file(config.prior_captions, "technique.config.prior_captions")


def read_prior_file(path: str, field: str) -> list[str]:
    """Captions of a COCO captions JSON (every annotation, as the official cache uses all five
    captions per image), a CSV with a ``caption``/``prompt`` column, or a text file (one per line).

    Read once per file version: config checks, the fingerprint and the edit all ask for it, and a
    COCO prior is ~600k captions."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, 0)
    return list(_read_prior_file(str(p), stamp, field))


@functools.lru_cache(maxsize=4)
def _read_prior_file(path: str, stamp: tuple[int, int], field: str) -> tuple[str, ...]:
    low = path.lower()
    if low.endswith(".json"):
        from erasekit.datasets.io import read_json

        data = read_json(path, field, "captions JSON")
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            return tuple(" ".join(str(a.get("caption", "")).split()) for a in data["annotations"]
                         if isinstance(a, dict) and str(a.get("caption", "")).strip())
    if low.endswith((".csv", ".json")):
        from erasekit.datasets.coco import load_coco_captions

        return tuple(it.prompt for it in load_coco_captions(path, None, field=field))
    return tuple(read_caption_file(path, field))


def check_official(config: MACEConfig, path: str) -> None:
    """``recipe: official_cfr`` fixes its own templates, alignment and weights; it needs a prior
    weight when it has a prior, and a prior or λ > 0 to be solvable."""
    for key in OFFICIAL_FIXED:
        if key in config.model_fields_set:
            raise ConfigError(f"{path}.{key}", "is fixed by recipe: official_cfr", f"remove {key} (or use recipe: erasekit)")
    if config.prior_captions not in (None, "auto") and not read_prior_file(config.prior_captions, f"{path}.prior_captions"):
        raise ConfigError(f"{path}.prior_captions", f"{config.prior_captions} holds no caption", "give a COCO captions CSV/JSON, 'auto', or null")
    has_prior = config.prior_captions is not None and bool(config.train_preserve_scale)
    if config.prior_captions is not None and config.train_preserve_scale is None:
        raise ConfigError(f"{path}.train_preserve_scale", "required with a caption prior under official_cfr",
                          "use the official value: 7e-7 for explicit content, 1e-4 for celebrities/art")
    if not has_prior and config.lambda_cfr <= 0:
        raise ConfigError(f"{path}.lambda_cfr", "λ = 0 without a caption prior leaves the system singular",
                          "give prior_captions + train_preserve_scale, or λ > 0 (official objects: 1e1-1e3)")


def _gram_device(dev: torch.device) -> torch.device:
    return torch.device("cpu") if dev.type == "mps" else dev


def resolve_prior(config: MACEConfig) -> tuple[list[str], str]:
    """The caption prior as a list, and a short label of where it came from."""
    return caption_prior(config.model_id, config.prior_captions)


@TECHNIQUES.register("mace", description="MACE closed-form refinement of cross-attention K/V (seconds, deterministic).")
class MACE(WeightEdit):
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
    label = "MACE"
    identity_key = "cfr"
    edit_fields = CFR_FIELDS
    config: MACEConfig

    @classmethod
    def check_config(cls, config: MACEConfig, path: str) -> None:  # type: ignore[override]
        super().check_config(config, path)
        check_guide_list(as_list(config.erase_from), len(as_list(config.erase_concept)), f"{path}.erase_from")
        if config.recipe == "official_cfr":
            check_official(config, path)
            return
        for key in ("concept_type", "train_preserve_scale"):
            if key in config.model_fields_set:
                raise ConfigError(f"{path}.{key}", "is used by recipe: official_cfr only", f"remove {key}, or set recipe: official_cfr")
        if config.lambda_cfr <= 0:
            raise ConfigError(f"{path}.lambda_cfr", "must be greater than 0", "use e.g. 0.1 (λ = 0 is only valid with recipe: official_cfr)")
        if config.prior_captions not in (None, "auto"):
            if not read_caption_file(config.prior_captions, f"{path}.prior_captions"):
                raise ConfigError(f"{path}.prior_captions", f"{config.prior_captions} holds no caption",
                                  "give a UTF-8 text file with one caption per line, 'auto', or null")

    # -------------------------------------------------------------- identity

    def edit_payload(self) -> dict[str, Any]:
        """What determines the CFR's weights, with defaults and files resolved to their content."""
        cfg = self.config
        if cfg.recipe == "official_cfr":
            captions = official_prior(cfg)
            return {
                "cfr_version": CFR_VERSION,
                "recipe": "official_cfr",
                "erase": concept_targets(cfg),
                "lambda_cfr": cfg.lambda_cfr,
                "templates": list(official_templates(cfg)),
                "prior": {"digest": captions_digest(captions), "n": len(captions)},
                "train_preserve_scale": cfg.train_preserve_scale,
            }
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

    # -------------------------------------------------------------- the CFR

    def edit(self, pipe: Any) -> dict[str, Any]:
        cfg = self.config
        unet = pipe.unet
        layers = cross_attention_kv(unet)
        d_text = context_dim(pipe)
        bad = [n for n, lin in layers if lin.in_features != d_text]
        if bad:
            raise TechniqueError(f"MACE: {bad[0]} reads {layers[0][1].in_features}-dim context but the text encoder outputs {d_text}")
        if cfg.recipe == "official_cfr":
            return self._official(pipe, layers)
        prior, prior_label = resolve_prior(cfg)
        plan = build_plan(cfg, prior)
        if not plan.erase:
            raise TechniqueError("MACE: no erase prompts (each template with the concept equals the one with its target)")
        enc = encode_plan(pipe, plan)
        t0 = time.perf_counter()
        blocks = config_rows(enc, cfg)
        r, grams = solve_cfr(blocks, cfg.lambda_cfr)
        apply_refinement([lin for _, lin in layers], r)
        if unet.device.type == "cuda":
            torch.cuda.synchronize(unet.device)
        t_solve = time.perf_counter() - t0
        log.info("MACE: %d erase / %d kept prompts, %d rows; text %.2fs, solve %.3fs, %d projections edited",
                 len(plan.erase), len(plan.preserve) + len(plan.prior), grams.n_pairs, enc.seconds, t_solve, len(layers))
        return {
            "layers_edited": len(layers),
            "seconds_text_encoding": round(enc.seconds, 4),
            "seconds_solve": round(t_solve, 4),
            "erase_pairs": [list(p) for p in plan.erase],
            "preserve_prompts": len(plan.preserve),
            "prior": {"source": prior_label, "kept": len(plan.prior)},
            "rows": grams.n_pairs,
            "alignment": cfg.alignment,
        }

    def _official(self, pipe: Any, layers: list[tuple[str, Any]]) -> dict[str, Any]:
        """The official CFR stage (see :func:`official_plan`): one solve over every concept's pairs
        plus the caption prior, streamed through the text encoder in batches (a COCO prior is
        ~600k captions × 77 rows: never held in memory at once)."""
        cfg = self.config
        t0 = time.perf_counter()
        plan = official_plan(cfg)
        enc = encode_plan(pipe, plan)
        blocks = cfr_rows(enc, "prefix_suffix", 0.0, 0.0, 0.0)
        grams = Grams(blocks[0].x.shape[-1], device=_gram_device(blocks[0].x.device))
        for b in blocks:
            grams.add(b.x, b.y, b.weight)
        captions = official_prior(cfg)
        weight = float(cfg.train_preserve_scale or 0.0) ** 2
        if captions and weight > 0:
            counts = Counter(captions)  # a caption listed k times weighs k times, as in the official sum
            unique = list(counts)
            for i in range(0, len(unique), 256):
                enc_b = encode_texts(pipe, unique[i : i + 256])
                h = enc_b.hidden
                w = torch.tensor([weight * counts[t] for t in unique[i : i + 256] for _ in range(h.shape[1])], dtype=torch.float64)
                order = [enc_b.index[t] for t in unique[i : i + 256]]
                grams.add(h[torch.tensor(order)].reshape(-1, h.shape[-1]), None, w)
        try:
            r = refinement_matrix(grams, cfg.lambda_cfr)
        except ValueError as exc:
            raise TechniqueError(f"MACE official_cfr: {exc}; set lambda_cfr > 0 or give prior_captions with train_preserve_scale") from None
        apply_refinement([lin for _, lin in layers], r)
        return {
            "label": "MACE (CFR stage)",
            "stages_not_run": "MACE's LoRA training and multi-LoRA fusion stages are not run: this is the closed-form stage only",
            "recipe": "official_cfr",
            "layers_edited": len(layers),
            "erase_pairs": len(plan.erase),
            "rows": grams.n_pairs,
            "prior": {"captions": len(captions), "weight_per_row": weight},
            "seconds": round(time.perf_counter() - t0, 4),
        }

    # kept for callers of the pre-WeightEdit name
    cfr_payload = edit_payload


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
    "resolve_prior",
    "solve_cfr",
]
