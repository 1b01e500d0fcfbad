"""What a UNet is conditioned on, per model family: text context, pooled text and SDXL's size/crop ids.

Why one module: erasekit calls the UNet itself in three places (SLD's guided sampling, ESD's
training, the white-box attacks) and reads the text context in every closed-form editor. Each
must condition exactly as the family's diffusers pipeline does, or an edit would be computed on
vectors the model never sees at generation time:

- **SD 1.x / 2.x**: one CLIP text encoder; the context is its last hidden state (77 × 768 or
  × 1024; SD 2.x's OpenCLIP-H is stored with 23 layers, so "last" is the pipeline's choice).
- **SDXL**: two encoders (CLIP ViT-L and OpenCLIP bigG); each contributes its *penultimate*
  hidden state (``hidden_states[-2]``, no final LayerNorm) and the two are concatenated into a
  77 × 2048 context; the second encoder's projected pooled output (``text_embeds``) and the
  micro-conditioning ``time_ids`` = (original H, W, crop top, left, target H, W) go in through
  ``added_cond_kwargs``. Both tokenizers share one BPE vocabulary, so a word sits at the same
  position in both (only the padding token differs: EOS vs "!"). An empty negative prompt is the
  all-zero context and pooled vector (``force_zeros_for_empty_prompt``), as in the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from erasekit.models.families import SDXL, family_of

# ------------------------------------------------------------------ the text context (closed-form editors)


def context_encoders(pipe: Any) -> list[tuple[Any, Any, int | None]]:
    """(text encoder, tokenizer, hidden layer) whose outputs, concatenated, are the cross-attention context.

    The layer is None for the last hidden state (SD 1.x / 2.x) and -2 for the penultimate (SDXL).
    """
    if family_of(pipe) == SDXL:
        return [(pipe.text_encoder, pipe.tokenizer, -2), (pipe.text_encoder_2, pipe.tokenizer_2, -2)]
    return [(pipe.text_encoder, pipe.tokenizer, None)]


@torch.no_grad()
def encode_hidden(text_encoder: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int = 32,
                  hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (n, L) and hidden states (n, L, d) of one encoder, as diffusers' pipelines compute them.

    Pad to ``model_max_length`` with the tokenizer's own pad token, truncate, pass an attention
    mask only where the encoder's config asks for one; ``hidden_layer`` None takes ``[0]`` (the
    last hidden state), an integer takes ``hidden_states[hidden_layer]``. Batches are formed in
    input order with a fixed size, so results are deterministic.
    """
    if not prompts:
        raise ValueError("no prompts to encode")
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    device = next(text_encoder.parameters()).device
    use_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))
    outs = []
    for i in range(0, len(prompts), batch_size):
        chunk = ids[i : i + batch_size].to(device)
        kwargs: dict[str, Any] = {}
        if use_mask:
            kwargs["attention_mask"] = (chunk != tokenizer.pad_token_id).long()
        if hidden_layer is None:
            outs.append(text_encoder(chunk, **kwargs)[0])
        else:
            outs.append(text_encoder(chunk, output_hidden_states=True, **kwargs).hidden_states[hidden_layer])
    return ids, torch.cat(outs)


def encode_context(pipe: Any, prompts: Sequence[str], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the first tokenizer (n, L) and the full context (n, L, Σd) a cross-attention layer reads."""
    parts = [encode_hidden(te, tok, prompts, batch_size, layer) for te, tok, layer in context_encoders(pipe)]
    hidden = torch.cat([h.to(parts[0][1].device, parts[0][1].dtype) for _, h in parts], dim=-1)
    return parts[0][0], hidden


@dataclass
class JointOutput:
    """:class:`JointTextEncoder`'s output: the joint context, both pooled summaries, and bigG's
    ``text_embeds`` alone (what SDXL's UNet receives as ``added_cond_kwargs["text_embeds"]``)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    text_embeds: torch.Tensor

    def __getitem__(self, i: int) -> torch.Tensor:
        return (self.last_hidden_state, self.pooler_output, self.text_embeds)[i]


class JointTextEncoder(torch.nn.Module):
    """SDXL's two text encoders as one text path: token ids of the first tokenizer in, the
    2048-d-shaped context out (``last_hidden_state`` = both penultimate states concatenated).

    Why: an attack that reads "the text encoder" must score the vectors SDXL's UNet actually
    reads. Both tokenizers share one vocabulary, so the second encoder gets the same ids except
    that every position after the first end-of-text becomes its own pad token ("!"), exactly
    what ``tokenizer_2`` produces for the same text. ``pooler_output`` is both encoders' pooled
    summaries concatenated (ViT-L's end-of-text state ⊕ bigG's projected ``text_embeds``, the
    pooled vector SDXL's UNet receives): MMA-Diffusion's objective on SDXL.
    """

    def __init__(self, text_encoder: Any, text_encoder_2: Any, eos_id: int, pad_id_2: int) -> None:
        super().__init__()
        self.first, self.second = text_encoder, text_encoder_2
        self.eos_id, self.pad_id_2 = int(eos_id), int(pad_id_2)
        self.config = text_encoder.config

    def get_input_embeddings(self) -> Any:
        return self.first.get_input_embeddings()

    def input_embedding_layers(self) -> list[Any]:
        """Both token-embedding tables (one vocabulary): an attack splicing token embeddings splices both."""
        return [self.first.get_input_embeddings(), self.second.get_input_embeddings()]

    def second_ids(self, ids: torch.Tensor) -> torch.Tensor:
        is_eos = ids == self.eos_id
        after = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first EOS
        return ids.masked_fill(after, self.pad_id_2)

    def forward(self, input_ids: torch.Tensor, **_: Any) -> JointOutput:
        o1 = self.first(input_ids, output_hidden_states=True)
        o2 = self.second(self.second_ids(input_ids), output_hidden_states=True)
        h1, h2 = o1.hidden_states[-2], o2.hidden_states[-2]
        pooled = torch.cat([o1.pooler_output, o2.text_embeds.to(o1.pooler_output.dtype)], dim=-1)
        return JointOutput(torch.cat([h1, h2.to(h1.dtype)], dim=-1), pooled, o2.text_embeds)


def context_encoder(pipe: Any) -> Any:
    """One module mapping the first tokenizer's ids to the context: the text encoder itself on
    SD 1.x / 2.x, a :class:`JointTextEncoder` on SDXL."""
    if family_of(pipe) != SDXL:
        return pipe.text_encoder
    return JointTextEncoder(pipe.text_encoder, pipe.text_encoder_2, pipe.tokenizer.eos_token_id, pipe.tokenizer_2.pad_token_id)


def context_dim(pipe: Any) -> int:
    """Width of the context: the sum of the encoders' hidden sizes (768, 1024, 2048 for the real models)."""
    return sum(int(te.config.hidden_size) for te, _, _ in context_encoders(pipe))


# ------------------------------------------------------------------ UNet conditioning (sampling, training, attacks)


@dataclass
class Conditioning:
    """Everything a UNet call is conditioned on besides the latent and timestep."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def unet_kwargs(self, dtype: torch.dtype | None = None) -> dict[str, Any]:
        dt = dtype or self.hidden.dtype
        kw: dict[str, Any] = {"encoder_hidden_states": self.hidden.to(dt)}
        if self.pooled is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled.to(dt), "time_ids": self.time_ids.to(dt)}  # type: ignore[union-attr]
        return kw

    def to(self, dtype: torch.dtype) -> Conditioning:
        return Conditioning(self.hidden.to(dtype), None if self.pooled is None else self.pooled.to(dtype),
                            None if self.time_ids is None else self.time_ids.to(dtype))

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Concatenate along the batch (uncond, cond, … in one UNet call)."""
        pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])  # type: ignore[misc]
        time_ids = None if parts[0].time_ids is None else torch.cat([p.time_ids for p in parts])  # type: ignore[misc]
        return Conditioning(torch.cat([p.hidden for p in parts]), pooled, time_ids)


def as_conditioning(c: Conditioning | torch.Tensor) -> Conditioning:
    """A bare context tensor is an SD 1.x / 2.x conditioning."""
    return c if isinstance(c, Conditioning) else Conditioning(c)


def weight_dtype(module: Any) -> torch.dtype:
    """The dtype of ``module``'s first parameter: what diffusers' ``.dtype`` returns for a UNet, without
    its walk over every submodule (a fifth of a toy ESD iteration when asked at every UNet call)."""
    return next(module.parameters()).dtype


def unet_output(unet: Any, x: torch.Tensor, t: Any, cond: Conditioning | torch.Tensor) -> torch.Tensor:
    """``unet(x, t, …).sample`` with ``cond`` in the UNet's dtype."""
    dtype = weight_dtype(unet)
    return unet(x.to(dtype), t, **as_conditioning(cond).unet_kwargs(dtype)).sample


@torch.no_grad()
def encode_condition(pipe: Any, prompts: Sequence[str], negatives: Sequence[str] | None = None, *, height: int,
                     width: int, guidance: bool = False) -> tuple[Conditioning, Conditioning | None]:
    """(conditional, unconditional or None) exactly as the family's pipeline encodes them.

    ``negatives`` None (or all empty) is the pipeline's default negative: the empty prompt on
    SD 1.x / 2.x, zeros on SDXL. ``height``/``width`` are SDXL's original and target size.
    """
    device = pipe._execution_device
    neg = None if negatives is None or not any(negatives) else list(negatives)
    if family_of(pipe) != SDXL:
        cond, uncond = pipe.encode_prompt(list(prompts), device, 1, guidance, negative_prompt=neg)
        return Conditioning(cond), (Conditioning(uncond) if guidance else None)
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
        prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=guidance, negative_prompt=neg)
    ids = sdxl_time_ids(height, width, len(prompts), cond.dtype, device)
    c = Conditioning(cond, pooled, ids)
    return c, (Conditioning(uncond, uncond_pooled, ids) if guidance else None)


def sdxl_time_ids(height: int, width: int, n: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """SDXL's ``time_ids`` for ``n`` images: original size, crop corner, target size (the pipeline's
    ``_get_add_time_ids`` with the defaults every erasekit image uses, :func:`sdxl_micro_conditioning`)."""
    m = sdxl_micro_conditioning(height, width)
    row = [*m["original_size"], *m["crops_coords_top_left"], *m["target_size"]]
    return torch.tensor([row] * n, dtype=dtype, device=device)


def sdxl_micro_conditioning(height: int, width: int) -> dict[str, list[int]]:
    """The size/crop conditioning every SDXL image erasekit draws gets (for cache keys and reports)."""
    return {"original_size": [int(height), int(width)], "crops_coords_top_left": [0, 0], "target_size": [int(height), int(width)]}


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor, output_type: str = "pil") -> list[Any]:
    """VAE decode + postprocess as the pipeline does (SDXL's fp16 VAE is upcast to float32 when its config says so)."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        z = (latents / vae.config.scaling_factor).to(vae.dtype)
        image = vae.decode(z, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
    return list(pipe.image_processor.postprocess(image, output_type=output_type, do_denormalize=[True] * len(latents)))


__all__ = ["Conditioning", "JointOutput", "JointTextEncoder", "as_conditioning", "context_dim", "context_encoder", "context_encoders", "decode_latents", "encode_condition",
           "encode_context", "encode_hidden", "sdxl_micro_conditioning", "sdxl_time_ids", "unet_output"]
