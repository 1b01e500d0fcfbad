"""What every weight-editing technique shares: the erase fields, checkpoints and identity.

MACE, UCE, RECE and SPEED all edit UNet weights once, before any image is drawn,
and the spec gives them the same persistence contract: ``save_path`` writes the
full UNet state dict (``torch.save(unet.state_dict())``) atomically with a JSON
sidecar, ``load_path`` reads one back with ``torch.load(weights_only=True)`` and
skips the edit. :class:`WeightEdit` implements that contract once; a technique
supplies only its edit (:meth:`WeightEdit.edit`) and what determines it
(:meth:`WeightEdit.edit_payload`).

Identity (the fingerprint that keys the image cache): a computed edit is named by
its resolved options (``edit_payload``: defaults filled in, files replaced by
their content). A loaded edit is named by the checkpoint: its sha256 is computed
and, when the sidecar written by ``save_path`` records that very sha256, the
sidecar's edit identity is used, so a load run shares its cached images with the
run that saved the file; otherwise the file hash itself is the identity. Trusting
the sidecar without hashing would let a replaced ``.pt`` reuse images of other
weights.
"""

from __future__ import annotations

import json
import logging
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator

from erasekit.config import TechniqueConfig
from erasekit.errors import ConfigError, TechniqueError
from erasekit.techniques.base import NON_SEMANTIC_FIELDS, Technique
from erasekit.techniques.checkpoint import (
    checkpoint_sha256,
    kv_digest,
    load_checkpoint,
    read_sidecar,
    sidecar_path,
)
from erasekit.techniques.closed_form import cross_attention_kv
from erasekit.utils.atomic_io import atomic_write

log = logging.getLogger(__name__)


def as_list(v: str | list[str] | None) -> list[str]:
    """A ``str | list[str] | None`` option as a list (None → [], a string → [it])."""
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def check_templates(v: list[str] | None, default: str) -> list[str] | None:
    """Prompt templates: null (``default`` applies), or a non-empty list, each with exactly one '{}' and no other braces."""
    if v is None:
        return v
    if not v:
        raise ValueError(f"templates must not be empty (use null for {default})")
    for t in v:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise ValueError(f"each template needs exactly one '{{}}' and no other braces, got {t!r}")
    return v


class EraseConfig(TechniqueConfig):
    """What every technique erases (weight edits and inference-time techniques alike)."""

    erase_concept: str | list[str] = Field("nudity", description="concept(s) to erase; a list = synonyms erased jointly")

    @field_validator("erase_concept")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        items = as_list(v)
        if not items or any(not s.strip() for s in items):
            raise ValueError("erase_concept must be a non-empty string or a non-empty list of non-empty strings")
        return v


class EditConfig(EraseConfig):
    """Fields of every weight-editing technique: what to erase, and where the edit is saved or loaded."""

    load_path: str | None = Field(None, description=".pt UNet state dict from an earlier run; skips the edit")
    save_path: str | None = Field(None, description="where to save the edited UNet state dict (.pt)")


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    import erasekit

    return {"erasekit": erasekit.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def try_base_fingerprint(model_id: str) -> str | None:
    """The base model's fingerprint, or None when it cannot be identified by its id."""
    try:
        from erasekit.models.loading import base_fingerprint

        return base_fingerprint(model_id)
    except Exception:  # noqa: BLE001 - any failure just means "not identifiable by id"
        return None


def check_guide_list(guides: list[str], n_concepts: int, field: str) -> None:
    """One guide for all concepts, or one per concept (the rule of every closed-form editor)."""
    if len(guides) > 1 and len(guides) != n_concepts:
        raise ConfigError(field, f"a list of {len(guides)} targets for {n_concepts} erase_concept entries",
                          "give one string for all concepts, or one per erase_concept entry")


class WeightEdit(Technique):
    """Base of the techniques that edit UNet weights (checkpoint IO, identity, load-or-edit).

    Subclasses set ``Config`` (an :class:`EditConfig`), ``label`` (the name in
    messages), ``edit_fields`` (config fields that only matter when the edit is
    computed) and implement :meth:`edit` and :meth:`edit_payload`.
    """

    Config: ClassVar[type[TechniqueConfig]] = EditConfig
    label: ClassVar[str] = "edit"
    identity_key: ClassVar[str] = "edit"
    edit_fields: ClassVar[tuple[str, ...]] = ()
    config: EditConfig

    @classmethod
    def concepts(cls, config: EditConfig) -> list[str]:  # type: ignore[override]
        return as_list(config.erase_concept)

    @classmethod
    def check_config(cls, config: EditConfig, path: str) -> None:  # type: ignore[override]
        if config.load_path and config.save_path:
            if Path(config.load_path).expanduser().resolve() == Path(config.save_path).expanduser().resolve():
                raise ConfigError(f"{path}.save_path", "load_path and save_path name the same file", "use save_path on the first run and load_path afterwards, never both on one file")
        if config.load_path and not Path(config.load_path).expanduser().is_file():
            raise ConfigError(f"{path}.load_path", f"file not found: {config.load_path}", "point it at a .pt saved by an earlier run with save_path, or remove it to compute the edit")

    # -------------------------------------------------------------- to implement

    @abstractmethod
    def edit_payload(self) -> dict[str, Any]:
        """What determines the edited weights, with defaults and files resolved to their content."""

    @abstractmethod
    def edit(self, pipe: Any) -> dict[str, Any]:
        """Compute the edit in place on ``pipe.unet``; return details for the report."""

    # -------------------------------------------------------------- identity

    def fingerprint_payload(self) -> dict[str, Any]:
        d = self.config.model_dump(mode="json")
        for k in (*NON_SEMANTIC_FIELDS, *self.edit_fields):
            d.pop(k, None)
        d[self.identity_key] = self._checkpoint_identity(self.config.load_path) if self.config.load_path else self.edit_payload()
        return d

    def _checkpoint_identity(self, load_path: str) -> dict[str, Any]:
        sha = checkpoint_sha256(load_path)
        meta = read_sidecar(Path(load_path).expanduser())
        key = f"{self.identity_key}_payload"
        if isinstance(meta, dict) and meta.get("checkpoint_sha256") == sha and isinstance(meta.get(key), dict):
            return meta[key]
        return {"checkpoint_sha256": sha}

    # -------------------------------------------------------------- apply

    def apply(self, pipe: Any) -> dict[str, Any]:
        unet = pipe.unet
        layers = cross_attention_kv(unet)
        if not layers:
            raise TechniqueError(f"{self.label}: the UNet has no cross-attention key/value projections (attn2.to_k / attn2.to_v)")
        if self.config.load_path:
            if self.config.save_path:
                log.info("%s: save_path ignored because load_path is set (the edit does not run)", self.label)
            return self._load(unet, layers)
        base_kv = kv_digest(layers)
        details = {"edit_ran": True, "loaded_from": None, **self.edit(pipe), "saved_path": None}
        if self.config.save_path:
            details["saved_path"] = str(self._save(unet, layers, base_kv))
        return details

    # -------------------------------------------------------------- save / load

    def _save(self, unet: Any, layers: list[tuple[str, torch.nn.Linear]], base_kv: str) -> Path:
        cfg = self.config
        path = Path(cfg.save_path).expanduser()  # type: ignore[arg-type]
        state = unet.state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        sha = checkpoint_sha256(path)
        base_fp = try_base_fingerprint(cfg.model_id)
        name = getattr(type(self), "registry_name", self.label.lower())
        meta = {
            "format": f"erasekit.{name}.checkpoint/1",
            "technique": name,
            "checkpoint": path.name,
            "checkpoint_sha256": sha,
            "model_id": cfg.model_id,
            "base_fingerprint": base_fp,
            "base_kv_digest": base_kv,
            "edited_kv_digest": kv_digest(layers),
            "fingerprint": self.fingerprint(base_fp, name) if base_fp else None,
            f"{self.identity_key}_payload": self.edit_payload(),
            "config": cfg.model_dump(mode="json"),
            "dtype": str(next(unet.parameters()).dtype).replace("torch.", ""),
            "layers_edited": [n for n, _ in layers],
            "versions": _versions(),
        }
        text = json.dumps(meta, indent=2, sort_keys=True)
        atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        log.info("%s: saved edited UNet to %s (+ %s)", self.label, path, sidecar_path(path).name)
        return path

    def _load(self, unet: Any, layers: list[tuple[str, torch.nn.Linear]]) -> dict[str, Any]:
        cfg = self.config
        label = self.label
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
                f"{label}: {path} does not fit this UNet ({len(missing)} missing keys, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); it was saved from a different architecture. "
                "Load it with the base model it was made for, or remove load_path to recompute the edit"
            )
        shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
        if shapes:
            k, got, want = shapes[0]
            raise TechniqueError(
                f"{label}: {path} does not fit this UNet: {len(shapes)} tensors have other shapes (e.g. {k}: {got} in the file, {want} in the model); "
                "it was saved from a different architecture. Load it with the base model it was made for, or remove load_path"
            )
        meta = read_sidecar(path)
        if meta is None:
            warnings.append(f"no sidecar {sidecar_path(path).name}: cannot check which base model this checkpoint was made from")
        else:
            cur_fp = try_base_fingerprint(cfg.model_id)
            if meta.get("base_kv_digest") not in (None, base_kv) or (meta.get("base_fingerprint") and cur_fp and meta["base_fingerprint"] != cur_fp):
                warnings.append(
                    f"checkpoint {path.name} was made from a different base model ({meta.get('model_id')!r}, "
                    f"fingerprint {meta.get('base_fingerprint')}) than the one loaded ({cfg.model_id!r}, fingerprint {cur_fp})"
                )
            made_by = meta.get("technique")
            own = getattr(type(self), "registry_name", None)
            if made_by and own and made_by != own:
                warnings.append(f"checkpoint {path.name} was saved by technique {made_by!r}, loaded as {own!r}")
        for w in warnings:
            log.warning("%s: %s", label, w)
        unet.load_state_dict(state, strict=True)
        changed = sum(1 for name, lin in layers if not torch.equal(lin.weight.detach().to("cpu", torch.float32), before[name]))
        return {
            "edit_ran": False,
            "loaded_from": str(path),
            "layers_edited": changed,
            "seconds_load": round(time.perf_counter() - t0, 4),
            "warnings": warnings,
            "saved_path": None,
        }


__all__ = ["EditConfig", "EraseConfig", "WeightEdit", "as_list", "check_guide_list", "check_templates", "try_base_fingerprint"]
