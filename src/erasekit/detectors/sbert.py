"""TIFA's answer-to-choice mapping: exact match, else the closest choice by a sentence encoder.

TIFA (Hu et al., ICCV 2023) maps a free-form VQA answer onto a multiple-choice option
as its code does: a choice equal to the answer wins; otherwise the answer and every
choice are embedded with SBERT (``sentence-transformers/all-mpnet-base-v2``: mean of the
last hidden states over the attention mask, L2-normalised) and the choice with the
largest dot product is taken. This module loads such an encoder with ``transformers``
from a local folder or the HF cache (offline; no ``sentence-transformers`` dependency)
and implements that rule; :mod:`erasekit.metrics.tifa` uses it with ``snapping: sbert``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from erasekit.errors import ModelNotFoundError

DEFAULT_SBERT = "sentence-transformers/all-mpnet-base-v2"
_LOCK = threading.Lock()
_ENCODERS: dict[tuple[str, str], SentenceEncoder] = {}


class SentenceEncoder:
    """Masked mean pooling of a transformers encoder's last hidden state, L2-normalised."""

    def __init__(self, model: str = DEFAULT_SBERT, device: str = "cpu", field: str = "sbert_model") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_id, self.device = model, device
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
            self.model = AutoModel.from_pretrained(model, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"{field}: sentence encoder {model!r} is not on this machine ({str(exc)[:160]})") from None

    def encode(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.no_grad():
            batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.double()
            mask = batch["attention_mask"].unsqueeze(-1).double()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).cpu()


def sentence_encoder(model: str, device: str = "cpu", field: str = "sbert_model") -> SentenceEncoder:
    """One shared encoder per (model, device)."""
    with _LOCK:
        key = (model, device)
        if key not in _ENCODERS:
            _ENCODERS[key] = SentenceEncoder(model, device, field)
        return _ENCODERS[key]


def snap_sbert(answer: str, choices: Sequence[str], encode: Callable[[Sequence[str]], Any]) -> str | None:
    """TIFA's rule: a choice equal to the answer, else the choice whose embedding has the largest
    dot product with the answer's (``encode`` returns L2-normalised rows). None without choices."""
    choices = list(choices)
    if not choices:
        return None
    if answer in choices:
        return answer
    emb = encode([answer, *choices])
    sims = emb[1:] @ emb[0]
    return choices[int(sims.argmax())]
