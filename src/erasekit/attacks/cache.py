"""Automatic cache of adversarial prompts (one JSON file per attack result).

Why: an MMA attack on SD v1.4 costs minutes per target prompt, and the same
adversarial prompts serve the erased model, the base model (``compare_to_base``)
and every later run. Today's tools cache them by hand, with nothing telling a
user that the text encoder changed since. Here the key is everything the result
depends on, so a stale entry can never be served:

- the **text-encoder fingerprint** (:func:`text_encoder_fingerprint`: a hash of
  the encoder's actual weights + the tokenizer's vocabulary), so an edit of the
  text path, another base model or another dtype is another key, while a technique
  that leaves the text encoder alone (MACE edits only UNet K/V) shares the key
  with its base model — the attack runs once for both;
- the **target prompt**, the **attack parameters** (including the banned
  substrings and the algorithm version) and the **seed/restart**.

Layout: ``<root>/<key[:2]>/<key>.json`` where ``key = sha256(canonical payload)``;
each file holds the payload it was written for (re-checked on read: a mismatch
or a corrupt file is a miss, deleted, and recomputed) and the result. Writes are
atomic (temp file + rename), so a kill never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from pathlib import Path
from typing import Any

from erasekit.utils.atomic_io import atomic_write_json
from erasekit.utils.canonical import canonical_json, stable_hash

log = logging.getLogger(__name__)

#: Bump when the meaning of a cache entry changes (old entries then stop matching).
CACHE_FORMAT = "erasekit.attack-cache/1"

# In-process memo: module -> (weight identities, tokenizer id, fingerprint). Both variants
# of a compare_to_base run share one text encoder object; hashing it again is skipped
# unless a tensor was replaced or modified in place (data_ptr / _version change).
_FP_MEMO: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], int, str]] = weakref.WeakKeyDictionary()


def _tensor_state(module: Any) -> tuple[Any, ...]:
    state = []
    for name, t in module.state_dict(keep_vars=True).items():
        state.append((name, t.data_ptr(), int(getattr(t, "_version", 0)), tuple(t.shape), str(t.dtype), str(t.device)))
    return tuple(state)


def _tokenizer_digest(tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    vocab = tokenizer.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=True).encode())
    h.update(str(getattr(tokenizer, "model_max_length", "")).encode())
    return h.hexdigest()


def text_encoder_fingerprint(text_encoder: Any, tokenizer: Any | None = None) -> str:
    """Identity of a text path: sha256 over every tensor of the encoder's state dict
    (name, dtype, shape, raw bytes) plus the tokenizer's vocabulary. 24 hex chars.

    Hashing the real weights (not the model id) is what makes the cache safe: a
    technique that edits the text encoder gets a new key automatically. Cost,
    measured on this project's 2-core CPU: sha256 of SD v1.4's 123 M-parameter
    text encoder (492 MB in fp32) takes ~0.7 s, so every tensor is hashed in full
    (no sampling). Memoised per process while no tensor is replaced or modified.
    """
    import torch

    state = _tensor_state(text_encoder)
    memo = _FP_MEMO.get(text_encoder)
    if memo is not None and memo[0] == state and memo[1] == id(tokenizer):
        return memo[2]
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(text_encoder.state_dict().items()):
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            data = t.detach().contiguous().cpu()
            if data.numel():
                h.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    if tokenizer is not None:
        h.update(_tokenizer_digest(tokenizer).encode())
    fp = h.hexdigest()[:24]
    _FP_MEMO[text_encoder] = (state, id(tokenizer), fp)
    return fp


def cache_key(payload: dict[str, Any]) -> str:
    return stable_hash(payload)


class AttackCache:
    """Adversarial-prompt store under ``root`` (the run's ``cache_dir / "attacks"``).

    ``get(payload)`` → the stored result dict or None; ``put(payload, result)``
    writes it atomically. ``hits`` / ``misses`` count lookups.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path_for(self, payload: dict[str, Any]) -> Path:
        key = cache_key(payload)
        return self.root / key[:2] / f"{key}.json"

    def get(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path_for(payload)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            ok = entry.get("format") == CACHE_FORMAT and entry.get("key") == json.loads(canonical_json(payload))
            result = entry.get("result")
            ok = ok and isinstance(result, dict) and isinstance(result.get("prompt"), str)
        except (OSError, ValueError, AttributeError):
            ok, result = False, None
        if not ok:
            log.warning("attack cache entry %s is corrupt or does not match its key; recomputing", path)
            try:
                path.unlink()
            except OSError:
                pass
            self.misses += 1
            return None
        self.hits += 1
        return result

    def put(self, payload: dict[str, Any], result: dict[str, Any]) -> Path:
        import os

        path = self.path_for(payload)
        # which process computed it (a distributed run splits the attacks across ranks: the report can prove it)
        atomic_write_json(path, {"format": CACHE_FORMAT, "key": json.loads(canonical_json(payload)), "result": result,
                                 "written_by_rank": int(os.environ.get("RANK", "0") or 0)})
        return path

    def entries(self) -> list[dict[str, Any]]:
        """Every readable entry (``{"format", "key", "result"}``), sorted by file name."""
        out = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.glob("*/*.json")):
            try:
                e = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(e, dict) and e.get("format") == CACHE_FORMAT:
                out.append(e)
        return out
