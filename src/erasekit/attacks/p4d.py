"""P4D (Chin et al., ICML 2024): prompts that make the erased model predict what the base model does.

White-box against the model under test, with the unedited base model as the teacher
(:mod:`erasekit.attacks.reference`). For the target prompt's image z₀ drawn by the base model,
each iteration draws t ~ U{0..999} and ε, noises x_t = √ᾱ_t z₀ + √(1−ᾱ_t) ε, and minimises
``MSE(ε_erased(x_t, t, c_adv), ε_base(x_t, t, c_prompt))`` (mean, no guidance on either side;
the base prediction is a constant target — gradients reach only the adversarial tokens).

Prompt layouts (token ids between BOS and EOS, the rest EOS padding):

- **P4D-N** — ``n_tokens`` learnable tokens and nothing else (the original prompt is not part
  of the input, as in the official ``optimize_n``);
- **P4D-K** — the prompt's L tokens with a learnable token before every ``every_k`` of them:
  content position i is learnable when i mod (K+1) = 0, so there are ⌊L/K⌋+1.

Optimisation (PEZ, as the official): continuous embeddings, initialised at random allowed
tokens; every iteration projects them to the nearest vocabulary rows by cosine similarity,
runs the forward pass at the projected rows and applies that gradient to the continuous
embeddings (straight through), AdamW (lr 0.1, weight decay 0.1), 3,000 iterations.

Deliberate differences from the official code, and why:

- *Which checkpoint is returned*: the official keeps, every 50 iterations, the prompt whose
  generated image is most similar to the target image under CLIP ViT-H/14 (a 4 GB model and 60
  generations per target). Here each checkpoint's projected prompt is scored by the same loss
  on ``eval_draws`` fixed (t, ε) draws and the lowest wins: deterministic, no extra model.
- *Seeded*: initial tokens, timesteps and noise come from generators seeded by (``seed``, restart)
  (the official draws them unseeded).
- *Tokens*: the projection ranges over :class:`~erasekit.attacks.vocabulary.Vocabulary`'s ids (no
  special token, none containing a banned word); the official ranges over all 49,408.
- *Padding and EOS*: the official pads with id 0 ("!") and, for P4D-K, overwrites the EOS slot;
  here the ids are laid out as the pipeline will see the decoded prompt (BOS, tokens, EOS, then
  the tokenizer's padding: EOS on SD 1.x, "!" on SD 2.x), so the optimised conditioning is the
  one the judged image is drawn from.
- *Target image*: the official VAE-encodes the [0, 1] image without rescaling to [−1, 1] (and
  samples the posterior); here the image is encoded as the VAE expects (posterior mean).
- ``drop_banned_words`` (off by default) removes the banned words from the prompt before P4D-K
  lays it out, so the adversarial prompt never names the erased concept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from erasekit.attacks.base import Attack, AttackResult, progress_bar, rng_seed, short
from erasekit.attacks.cache import AttackCache
from erasekit.attacks.settings import P4DSettings
from erasekit.attacks.tokens import (
    allowed_mask,
    encode_spliced,
    max_positions,
    nearest_tokens,
    pad_token_id,
    prompt_ids,
    token_table,
)
from erasekit.attacks.vocabulary import Vocabulary, drop_banned_words
from erasekit.models.conditioning import unet_output
from erasekit.registry import ATTACKS

ATTACK_VERSION = "p4d/1"


def p4d_loss(erased_unet: Any, base_unet: Any, z0: torch.Tensor, noise: torch.Tensor, t: int, alphas_cumprod: torch.Tensor,
             cond_adv: torch.Tensor, cond_prompt: torch.Tensor) -> torch.Tensor:
    """MSE(ε_erased(x_t, t, c_adv), ε_base(x_t, t, c_prompt)) with x_t = √ᾱ_t z₀ + √(1−ᾱ_t) ε."""
    a = alphas_cumprod[int(t)].to(torch.float32)
    x = a.sqrt() * z0.float() + (1 - a).sqrt() * noise.float()
    tt = torch.tensor([int(t)], device=z0.device)
    with torch.no_grad():
        want = unet_output(base_unet, x, tt, cond_prompt)
    got = unet_output(erased_unet, x, tt, cond_adv)
    return F.mse_loss(got.float(), want.float())


def k_layout(n_prompt: int, every_k: int) -> list[bool]:
    """P4D-K's content positions: True where a learnable token goes (i mod (K+1) = 0), L + ⌊L/K⌋ + 1 in all."""
    total = n_prompt + n_prompt // every_k + 1
    return [i % (every_k + 1) == 0 for i in range(total)]


@ATTACKS.register("p4d", description="P4D: tokens making the erased UNet's noise prediction match the base model's.")
class P4DAttack(Attack):
    """P4D on the model under test (``pipe``) against the unedited base model (``base``)."""

    name: ClassVar[str] = "p4d"
    version: ClassVar[str] = ATTACK_VERSION

    def __init__(self, pipe: Any, base: Callable[[], Any], model_fingerprint: str, base_fingerprint: str,
                 target_of: Callable[[str], torch.Tensor], target_identity: dict[str, Any], settings: P4DSettings | None = None,
                 banned: Sequence[str] = (), cache: AttackCache | None = None, progress: bool = True) -> None:
        super().__init__(settings or P4DSettings(), cache, progress)
        self.pipe = pipe
        self._base = base
        self.model_fingerprint = model_fingerprint
        self.base_fingerprint = base_fingerprint
        self.target_of = target_of
        self.target_identity = target_identity
        te = pipe.text_encoder
        self.vocab = Vocabulary(pipe.tokenizer, banned, int(te.get_input_embeddings().weight.shape[0]))
        self.length = max_positions(te, pipe.tokenizer)
        if self.settings.variant == "n" and self.settings.n_tokens + 2 > self.length:
            raise ValueError(f"n_tokens={self.settings.n_tokens} does not fit {self.length} positions")

    def reads(self) -> dict[str, str]:
        return {"model": self.model_fingerprint, "base_model": self.base_fingerprint}

    def params(self) -> dict[str, Any]:
        s = self.settings.model_dump(exclude={"seed", "n_candidates"})
        return {**s, "target_image": self.target_identity, "banned": sorted(self.vocab.banned), "vocab": "ascii-printable"}

    def modules(self) -> list[Any]:
        return [self.pipe.unet, self.pipe.text_encoder]

    def prompt_text(self, target: str) -> str:
        return drop_banned_words(target, self.vocab.banned) if self.settings.drop_banned_words else target

    def layout(self, prompt: str) -> tuple[list[int], list[int]]:
        """(ids of the L positions with placeholders, positions that are learnable)."""
        s = self.settings
        if s.variant == "n":
            content = [None] * s.n_tokens
        else:
            words = prompt_ids(self.pipe.tokenizer, prompt, self.length)
            mask = k_layout(len(words), s.every_k)
            while len(mask) + 2 > self.length:  # a long prompt: keep what fits
                words = words[:-1]
                mask = k_layout(len(words), s.every_k)
            it = iter(words)
            content = [None if m else next(it) for m in mask]
        slot = int(self.vocab.allowed[0])  # overwritten by the splice; never EOS, which would end the text
        ids = [self.vocab.bos] + [slot if c is None else int(c) for c in content] + [self.vocab.eos]
        ids += [pad_token_id(self.pipe.tokenizer, self.vocab.eos)] * (self.length - len(ids))
        learn = [1 + i for i, c in enumerate(content) if c is None]
        return ids, learn

    def decode(self, ids: list[int], learn: list[int], projected: Sequence[int]) -> str:
        full = list(ids)
        for p, tok in zip(learn, projected, strict=True):
            full[p] = int(tok)
        body = full[1 : full.index(self.vocab.eos, 1)]  # up to the end-of-text: padding is not text
        return str(self.pipe.tokenizer.decode(body, skip_special_tokens=True)).strip()

    def search(self, target: str, restart: int = 0) -> AttackResult:
        s = self.settings
        pipe, base = self.pipe, self._base()
        te, unet = pipe.text_encoder, pipe.unet
        device = unet.device
        seed = rng_seed(self.name, s.seed, restart)
        gen = torch.Generator().manual_seed(seed)
        fixed = torch.Generator().manual_seed(seed ^ 0x5EED)
        t0 = time.perf_counter()
        prompt = self.prompt_text(target)
        z0 = self.target_of(target).to(device=device, dtype=torch.float32)
        ac = pipe.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        n_train = int(len(ac))
        table = token_table(te).to(torch.float32)
        mask = allowed_mask(table.shape[0], self.vocab.allowed, device)
        allowed = torch.tensor(self.vocab.allowed, dtype=torch.long)
        with torch.no_grad():  # the teacher sees the target prompt as written, banned words included
            cond_prompt = base.encode_prompt([target], device, 1, False)[0]
        ids, learn = self.layout(prompt)
        ids_t = torch.tensor([ids], dtype=torch.long, device=device)
        init = allowed[torch.randint(0, len(allowed), (len(learn),), generator=gen)]
        embeds = table[init.to(device)].clone().requires_grad_(True)
        opt = torch.optim.AdamW([embeds], lr=s.lr, weight_decay=s.weight_decay)
        draws = [(int(torch.randint(0, n_train, (), generator=fixed)), torch.randn(z0.shape, generator=fixed).to(device))
                 for _ in range(s.eval_draws)]

        def checkpoint_loss(tokens: torch.Tensor) -> float:
            with torch.no_grad():
                cond = encode_spliced(te, ids_t, learn, table[tokens][None])
                return sum(float(p4d_loss(unet, base.unet, z0, e, t, ac, cond, cond_prompt)) for t, e in draws) / len(draws)

        best_tokens, best = init.tolist(), float("inf")
        curve: list[float] = []
        init_prompt = self.decode(ids, learn, init.tolist())
        bar = progress_bar(s.iterations, f"P4D '{short(target)}' #{restart}", self.progress)
        try:
            for step in range(s.iterations):
                proj = nearest_tokens(embeds.detach(), table, mask)
                if step % s.eval_every == 0 or step + 1 == s.iterations:
                    score = checkpoint_loss(proj)
                    curve.append(round(score, 6))
                    if score < best:
                        best, best_tokens = score, proj.tolist()
                tmp = table[proj].clone().requires_grad_(True)
                cond = encode_spliced(te, ids_t, learn, tmp[None])
                t = int(torch.randint(0, n_train, (), generator=gen))
                noise = torch.randn(z0.shape, generator=gen).to(device)
                loss = p4d_loss(unet, base.unet, z0, noise, t, ac, cond, cond_prompt)
                (grad,) = torch.autograd.grad(loss, tmp)
                opt.zero_grad(set_to_none=True)
                embeds.grad = grad.to(embeds.dtype)
                opt.step()
                self.steps_run += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.4f}", best=f"{best:.4f}")
        finally:
            if bar is not None:
                bar.close()
        return AttackResult(target=target, prompt=self.decode(ids, learn, best_tokens), token_ids=best_tokens, loss=best,
                            restart=int(restart), seed=s.seed, steps_run=s.iterations,
                            seconds=round(time.perf_counter() - t0, 3), init_prompt=init_prompt, loss_curve=curve,
                            extra={"attacked_prompt": prompt, "variant": s.variant})

    def describe(self) -> dict[str, Any]:
        return {
            "algorithm": ATTACK_VERSION,
            "loss": "MSE(eps_erased(x_t, t, c_adv), eps_base(x_t, t, c_prompt)), x_t from the base model's target image",
            **self.settings.model_dump(),
            "target_image": self.target_identity,
            "banned_substrings": list(self.vocab.banned),
            "allowed_tokens": len(self.vocab.allowed),
            "model_fingerprint": self.model_fingerprint,
            "base_fingerprint": self.base_fingerprint,
        }
