"""The linear algebra of MACE's closed-form refinement (CFR), free of any config.

For one cross-attention projection ``W`` (out × d) the CFR objective is

    min_W'  Σ_i w_i ‖W' x_i − W y_i‖²  +  λ ‖W' − W‖²_F

where ``x_i`` are text-encoder vectors to change (or to keep: then ``y_i = x_i``),
``y_i`` the vectors they should behave like, and ``w_i ≥ 0`` a weight per pair.
Setting the gradient to zero gives

    W' (Σ w x xᵀ + λI) = W (Σ w y xᵀ + λI)      ⇒      W' = W · R,
    R = (Σ w y xᵀ + λI)(Σ w x xᵀ + λI)⁻¹       (d × d, the same for every layer)

Why this module exists: because every target is ``W y`` (a projection of a text
vector by the *same* layer), the bracket does not depend on the layer. The
official code projects the targets through each of the 32 layers, accumulates
two Gram matrices per layer and inverts per layer; here the Grams are built
once in float64 and one Cholesky solve (never an explicit inverse) gives ``R``,
after which each layer costs one (out × d) · (d × d) product.
:func:`reference_refine` keeps the per-layer formulation for tests and the
benchmark (``benchmarks/mace_cfr.py``), which must agree to ≤ 1e-4 relative.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from erasekit.models.conditioning import encode_context, encode_hidden

# Rows per chunk when accumulating Grams: bounds the float64 working set to
# chunk × d × 8 bytes × 3 (≈ 150 MB at d = 768) whatever the number of prompts.
GRAM_CHUNK_ROWS = 8192


# ------------------------------------------------------------------ the layers


def cross_attention_kv(unet: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """Every text-reading projection: ``attn2.to_k`` and ``attn2.to_v`` of each cross-attention.

    Order is ``named_modules`` order (deterministic). SD 1.x and 2.x have 16 cross-attention
    blocks, so 32 projections; SDXL (transformer depths 1/2/10, mid block 10) has 70, so 140.
    ``to_q`` / ``to_out`` never see text and stay untouched.
    """
    out: list[tuple[str, torch.nn.Linear]] = []
    for name, mod in unet.named_modules():
        if name.endswith("attn2") or name == "attn2":
            for proj in ("to_k", "to_v"):
                lin = getattr(mod, proj, None)
                if isinstance(lin, torch.nn.Linear):
                    out.append((f"{name}.{proj}", lin))
    return out


# ------------------------------------------------------------------ text encoding


def encode_prompts(text_encoder: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (n, L) and last hidden states (n, L, d) of one encoder, exactly as SD 1.x/2.x pipelines
    condition on them (:func:`erasekit.models.conditioning.encode_hidden`)."""
    return encode_hidden(text_encoder, tokenizer, prompts, batch_size)


def unpadded_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's token ids with BOS/EOS, truncated like the padded encoding, without padding."""
    return list(tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids)


def last_token_index(ids: Sequence[int]) -> int:
    """Position of the last word token: UCE/RECE/SPEED's ``attention_mask.sum() - 2``.

    ``ids`` are the unpadded ids (BOS … EOS), so the index is ``len(ids) - 2``: the
    token just before EOS. For an empty prompt (BOS, EOS) it is 0 — the **BOS** row,
    which is what "guide = ''" maps a concept onto in all three official codes.
    """
    return max(len(ids) - 2, 0)


@dataclass
class Encodings:
    """Last hidden states (n, L, d) of unique prompts, their unpadded ids, and the encoding time."""

    index: dict[str, int]
    hidden: torch.Tensor
    tokens: dict[str, list[int]]
    seconds: float

    def rows(self, prompt: str) -> torch.Tensor:
        """All L positions of one prompt (L × d)."""
        return self.hidden[self.index[prompt]]

    def last_index(self, prompt: str) -> int:
        return last_token_index(self.tokens[prompt])

    def last(self, prompt: str) -> torch.Tensor:
        """The last-word-token row of one prompt (1 × d)."""
        i = self.last_index(prompt)
        return self.hidden[self.index[prompt], i : i + 1]


def encode_texts(pipe: Any, prompts: Sequence[str], batch_size: int = 32) -> Encodings:
    """The cross-attention context of the unique prompts (first-seen order) with their unpadded ids.

    ``pipe`` is anything with the family's text components (``text_encoder``/``tokenizer``, and
    ``text_encoder_2``/``tokenizer_2`` for SDXL): the context is
    :func:`erasekit.models.conditioning.encode_context`, so on SDXL every row is the 2048-d
    concatenation of both encoders. Token positions come from the first tokenizer; SDXL's two
    tokenizers share one vocabulary, so they agree on every position but the padding.
    """
    t0 = time.perf_counter()
    unique = list(dict.fromkeys(prompts))
    _, hidden = encode_context(pipe, unique, batch_size=batch_size)
    tokens = {p: unpadded_ids(pipe.tokenizer, p) for p in unique}
    return Encodings(index={p: i for i, p in enumerate(unique)}, hidden=hidden, tokens=tokens, seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------ alignment

ALIGNMENTS = ("following", "prefix_suffix", "concept")


def align_positions(src: Sequence[int], tgt: Sequence[int], length: int, mode: str) -> list[tuple[int, int]]:
    """Pairs (source position, target position) whose vectors the CFR maps onto each other.

    ``src``/``tgt`` are the unpadded token ids (BOS … EOS) of a prompt with the
    concept and of the same prompt with the concept replaced; ``length`` is the
    padded length the encoder sees (77 for SD). Split both into the common prefix
    (identical tokens before the concept), the differing middle (the concept
    tokens in ``src``, the replacement in ``tgt``) and the common suffix (words
    after the concept, EOS), followed by padding:

    * prefix: always paired with itself — in a causal encoder these vectors are
      identical, so the pair says "keep" and protects the shared context;
    * ``"following"`` (default): middle + suffix + every padding position. A causal
      encoder copies the concept into each position after it, and the UNet
      attends to all 77 positions, so all of them must move. A concept token is
      paired with the replacement token at the proportional position, or, when
      the replacement is empty, with the first target position after the prefix
      (the token that takes the concept's place);
    * ``"prefix_suffix"``: MACE's original alignment (``find_matching_indices``):
      suffix + padding only; the concept tokens themselves are left to MACE's
      LoRA stage, which erasekit does not run;
    * ``"concept"``: the middle only (what naive "remap the concept token" does).

    Suffix and padding positions are paired by offset from the end of the
    prompts; pairs whose target would fall past ``length`` are dropped (as MACE
    does).
    """
    if mode not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {mode!r}; expected one of {ALIGNMENTS}")
    ls, lt = len(src), len(tgt)
    k = 0
    while k < min(ls, lt) and src[k] == tgt[k]:
        k += 1
    s = 0
    while s < min(ls, lt) - k and src[ls - 1 - s] == tgt[lt - 1 - s]:
        s += 1
    ns, nt = ls - s - k, lt - s - k  # middle lengths
    pairs = [(p, p) for p in range(k)]
    if mode in ("following", "concept"):
        for j in range(ns):
            q = k + (j * nt) // ns if nt > 0 else k
            if q < length:
                pairs.append((k + j, q))
    if mode in ("following", "prefix_suffix"):
        shift = lt - ls
        for p in range(ls - s, length):
            q = p + shift
            if 0 <= q < length:
                pairs.append((p, q))
    return pairs


# ------------------------------------------------------------------ Grams and solve


@dataclass
class Grams:
    """Σ w x xᵀ and Σ w y xᵀ (d × d, float64), plus the total weight and pair count."""

    d: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    xx: torch.Tensor = field(init=False)
    yx: torch.Tensor = field(init=False)
    n_pairs: int = 0
    total_weight: float = 0.0

    def __post_init__(self) -> None:
        self.xx = torch.zeros(self.d, self.d, dtype=torch.float64, device=self.device)
        self.yx = torch.zeros(self.d, self.d, dtype=torch.float64, device=self.device)

    def add(self, x: torch.Tensor, y: torch.Tensor | None, weight: float | torch.Tensor = 1.0) -> None:
        """Add rows ``x`` (n × d) that should act like rows ``y`` (``None`` = keep: y = x)."""
        n = x.shape[0]
        if n == 0:
            return
        w = torch.as_tensor(weight, dtype=torch.float64, device=self.device)
        if w.ndim == 0:
            w = w.expand(n)
        for i in range(0, n, GRAM_CHUNK_ROWS):
            xs = x[i : i + GRAM_CHUNK_ROWS].to(self.device, torch.float64)
            wx = xs * w[i : i + GRAM_CHUNK_ROWS, None]
            self.xx += wx.T @ xs
            ys = xs if y is None else y[i : i + GRAM_CHUNK_ROWS].to(self.device, torch.float64)
            self.yx += ys.T @ wx
        self.n_pairs += n
        self.total_weight += float(w.sum())


def refinement_matrix(grams: Grams, lam: float) -> torch.Tensor:
    """R = (Σ w y xᵀ + λI)(Σ w x xᵀ + λI)⁻¹ via one Cholesky factorisation (float64).

    A = Σ w x xᵀ + λI is symmetric positive definite for λ > 0 (with λ = 0, as in the official
    MACE configs, only when the rows span the space), so Rᵀ = A⁻¹ Bᵀ is a Cholesky solve; no
    inverse is ever formed. A singular A is a ValueError, never NaN weights.
    """
    if lam < 0:
        raise ValueError("lambda must be >= 0")
    eye = torch.eye(grams.d, dtype=torch.float64, device=grams.device)
    a = grams.xx + lam * eye
    a = 0.5 * (a + a.T)  # exact symmetry against accumulated rounding
    b = grams.yx + lam * eye
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise ValueError("the closed-form system is singular (λ = 0 without enough preserved rows, or non-finite text embeddings)")
    return torch.cholesky_solve(b.T.contiguous(), chol).T.contiguous()


@dataclass
class RowBlock:
    """Rows x (n × d) that should act like y (None = stay as they are), each weighing ``weight``."""

    x: torch.Tensor
    y: torch.Tensor | None
    weight: float


def solve_rows(blocks: Sequence[RowBlock], lam: float, device: torch.device | None = None) -> tuple[torch.Tensor, Grams]:
    """Accumulate the Grams of all rows (float64) and return R (d × d) with W' = W·R for every layer."""
    d = blocks[0].x.shape[-1]
    dev = device or blocks[0].x.device
    if dev.type == "mps":  # no float64 on MPS
        dev = torch.device("cpu")
    grams = Grams(d, device=dev)
    for b in blocks:
        grams.add(b.x, b.y, b.weight)
    return refinement_matrix(grams, lam), grams


@torch.no_grad()
def apply_refinement(layers: Iterable[torch.nn.Linear], r: torch.Tensor) -> None:
    """W ← W · R for each layer, written as W + W·(R − I).

    The update W·(R − I) is small next to W, so computing it in float32 keeps the
    rounding relative to the update (≈1e-7 of it), below the float32 storage
    rounding of W itself, at half the cost of a float64 product (the 32 products
    are most of the edit's time on a CPU). On CUDA, float64 is cheap and used.
    """
    r = r.to(torch.float64)
    delta = r - torch.eye(r.shape[0], dtype=torch.float64, device=r.device)
    for lin in layers:
        w = lin.weight
        dt = torch.float64 if w.device.type == "cuda" else torch.float32
        d = delta.to(dt).to(w.device)  # cast first: MPS has no float64
        w32 = w.detach().to(dt)
        w.copy_((w32 + w32 @ d).to(w.dtype))


@torch.no_grad()
def reference_refine(weights: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam: float) -> list[torch.Tensor]:
    """The per-layer formulation, as the official MACE code computes it (for tests and benchmarks).

    For each layer: project the targets through the layer (values = W y), accumulate
    Σ w v xᵀ and Σ w x xᵀ for that layer, then solve W' (Σ w x xᵀ + λI) = λW + Σ w v xᵀ.
    Same objective and precision (float64) as :func:`refinement_matrix`, without
    sharing anything between layers.
    """
    x64, y64, w64 = x.double(), y.double(), w.double()
    out = []
    for weight in weights:
        wt = weight.double()
        values = y64 @ wt.T  # (n, out)
        mat1 = lam * wt + (values * w64[:, None]).T @ x64
        mat2 = lam * torch.eye(wt.shape[1], dtype=torch.float64) + (x64 * w64[:, None]).T @ x64
        out.append(torch.linalg.solve(mat2, mat1.T).T)  # mat2 symmetric: W' = mat1 · mat2⁻¹
    return out
