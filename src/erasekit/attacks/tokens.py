"""Prompts as token embeddings: what the attacks that optimise tokens through the UNet share.

Why hooks and not a copy of the text model's forward: a forward hook on the token-embedding
layer swaps in the rows an attack optimises, so any ``CLIPTextModel`` (transformers 4 or 5
layout, SD's encoder or the toy one) runs unpatched, with its own position embeddings,
causal mask and final layer norm — the ``last_hidden_state`` the UNet reads.

- :func:`encode_spliced` — the text encoder's ``last_hidden_state`` for token ids whose
  embedding rows at ``positions`` are replaced by ``embeds`` (gradients flow into ``embeds``);
- :func:`nearest_tokens` — PEZ's projection: the allowed vocabulary row with the highest cosine
  similarity to each continuous embedding;
- :func:`simplex_projection` — Euclidean projection of each row onto the probability simplex
  by bisection on the shift μ (UnlearnDiffAtk's step after every update);
- :func:`allowed_mask` — which token ids an attack may use (:class:`~erasekit.attacks.vocabulary.Vocabulary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def token_table(text_encoder: Any) -> torch.Tensor:
    """The token-embedding matrix [V, D] (no gradient)."""
    return text_encoder.get_input_embeddings().weight.detach()


def encode_spliced(text_encoder: Any, ids: torch.Tensor, positions: Sequence[int], embeds: torch.Tensor) -> torch.Tensor:
    """``last_hidden_state`` [B, L, D] of ``ids`` [B, L] with the token embeddings at ``positions``
    replaced by ``embeds`` [B, len(positions), D]."""
    emb_layer = text_encoder.get_input_embeddings()
    pos = torch.as_tensor(list(positions), dtype=torch.long, device=ids.device)

    def splice(_mod: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, pos] = embeds.to(out.dtype)
        return out

    handle = emb_layer.register_forward_hook(splice)
    try:
        out = text_encoder(input_ids=ids)
    finally:
        handle.remove()
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden


def encode_spliced_tokens(text_encoder: Any, ids: torch.Tensor, positions: Sequence[int], weights: torch.Tensor) -> Any:
    """The text path's whole output for ``ids`` [B, L] with the token embeddings at ``positions``
    replaced by ``weights`` [B, len(positions), V] @ each token-embedding table (one-hot rows pick
    tokens; probability rows mix them). Every table is spliced with the same weights, so on SDXL's
    :class:`~erasekit.models.conditioning.JointTextEncoder` both encoders see the same tokens."""
    pos = torch.as_tensor(list(positions), dtype=torch.long, device=ids.device)

    def splicer(table: Any) -> Any:
        embeds = weights.float() @ table.weight.detach().float()

        def splice(_mod: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[:, pos] = embeds.to(out.dtype)
            return out

        return splice

    handles = [table.register_forward_hook(splicer(table)) for table in embedding_layers(text_encoder)]
    try:
        return text_encoder(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()


def pad_token_id(tokenizer: Any, eos: int) -> int:
    """The id the tokenizer pads with (end-of-text on SD 1.x's CLIP tokenizer, "!" on OpenCLIP's)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(eos if pad is None else pad)


def embedding_layers(text_encoder: Any) -> list[Any]:
    """The token-embedding tables a spliced embedding must replace rows of: one per encoder (two for
    SDXL's :class:`~erasekit.models.conditioning.JointTextEncoder`, which share one vocabulary)."""
    layers = getattr(text_encoder, "input_embedding_layers", None)
    return list(layers()) if callable(layers) else [text_encoder.get_input_embeddings()]


def allowed_mask(vocab_size: int, allowed: Sequence[int], device: Any = "cpu") -> torch.Tensor:
    """Boolean [V]: True for the ids an attack may put in a prompt."""
    mask = torch.zeros(int(vocab_size), dtype=torch.bool)
    mask[torch.as_tensor(list(allowed), dtype=torch.long)] = True
    return mask.to(device)


def nearest_tokens(embeds: torch.Tensor, table: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """For each row of ``embeds`` [k, D], the id of the ``table`` row [V, D] with the highest cosine
    similarity (PEZ / P4D's projection), among ``mask`` when given."""
    a = torch.nn.functional.normalize(embeds.float(), dim=-1)
    b = torch.nn.functional.normalize(table.float(), dim=-1)
    sim = a @ b.T
    if mask is not None:
        sim = sim.masked_fill(~mask[None], float("-inf"))
    return sim.argmax(dim=-1)


def simplex_projection(p: torch.Tensor, tol: float = 1e-5, max_iter: int = 100) -> torch.Tensor:
    """Each row of ``p`` projected onto {0 ≤ q ≤ 1, Σq = 1}: q = clip(p − μ, 0, 1) with μ found by
    bisection to ``tol`` (the official UnlearnDiffAtk rule: a row already on the simplex within
    ``tol`` is kept as it is)."""
    out = p.clone()
    for i in range(p.shape[0]):
        row = p[i]
        if abs(float(row.clamp(0, 1).sum()) - 1.0) <= tol and float(row.min()) >= 0:
            out[i] = row.clamp(0, 1)
            continue
        lo, hi = float(row.min()) - 1.0, float(row.max())
        mu = (lo + hi) / 2
        for _ in range(max_iter):
            mu = (lo + hi) / 2
            s = float((row - mu).clamp(0, 1).sum())
            if abs(s - 1.0) <= tol:
                break
            if s > 1.0:
                lo = mu
            else:
                hi = mu
        out[i] = (row - mu).clamp(0, 1)
    return out


def prompt_ids(tokenizer: Any, prompt: str, max_len: int) -> list[int]:
    """The prompt's token ids without begin/end tokens, truncated to fit ``max_len`` positions."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return list(ids)[: max(0, max_len - 2)]


def max_positions(text_encoder: Any, tokenizer: Any) -> int:
    """How many positions the text path takes (77 for CLIP)."""
    cfg = getattr(text_encoder, "config", None)
    n = int(getattr(cfg, "max_position_embeddings", 77) or 77)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:
        n = min(n, tok_max)
    return n
