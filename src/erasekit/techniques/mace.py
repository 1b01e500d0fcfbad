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

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

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
from erasekit.techniques.closed_form import apply_refinement, cross_attention_kv
from erasekit.techniques.mace_cfr import (
    PromptPlan,
    build_plan,
    cfr_rows,
    concept_targets,
    config_rows,
    encode_plan,
    solve_cfr,
)
from erasekit.techniques.mace_config import DEFAULT_TEMPLATES, MACEConfig, as_list
from erasekit.techniques.prior import GENERIC_CAPTIONS, captions_digest, read_caption_file
from erasekit.utils.atomic_io import atomic_write

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
)

SIDECAR_FORMAT = "erasekit.mace.checkpoint/1"


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
        return as_list(config.erase_concept)

    @classmethod
    def check_config(cls, config: MACEConfig, path: str) -> None:  # type: ignore[override]
        if config.load_path and config.save_path:
            if Path(config.load_path).expanduser().resolve() == Path(config.save_path).expanduser().resolve():
                raise ConfigError(f"{path}.save_path", "load_path and save_path name the same file", "use save_path on the first run and load_path afterwards, never both on one file")
        if config.load_path and not Path(config.load_path).expanduser().is_file():
            raise ConfigError(f"{path}.load_path", f"file not found: {config.load_path}", "point it at a .pt saved by an earlier run with save_path, or remove it to run the CFR")
        froms = as_list(config.erase_from)
        n = len(as_list(config.erase_concept))
        if len(froms) > 1 and len(froms) != n:
            raise ConfigError(f"{path}.erase_from", f"a list of {len(froms)} targets for {n} erase_concept entries", "give one erase_from string for all synonyms, or one per erase_concept entry")
        if config.prior_captions not in (None, "auto"):
            if not read_caption_file(config.prior_captions, f"{path}.prior_captions"):
                raise ConfigError(f"{path}.prior_captions", f"{config.prior_captions} holds no caption",
                                  "give a UTF-8 text file with one caption per line, 'auto', or null")

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
