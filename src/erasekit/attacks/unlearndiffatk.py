"""UnlearnDiffAtk (Zhang et al., ECCV 2024): the erased model as its own classifier.

White-box against the model under test: for a target image z₀ (the *base* model's image for
the target prompt, :mod:`erasekit.attacks.reference`, or one the user supplies), find k tokens
put before the prompt such that the erased model denoises z₀ well when conditioned on them —
if it can, it still "knows" the concept.

Loss at timestep t (one fresh noise draw ε per step, no classifier-free guidance):
``MSE(ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t, c_adv), ε)`` (mean over elements), with ᾱ the scheduler's
training schedule and c_adv the text encoder's ``last_hidden_state`` of
``[BOS, adv₁..adv_k, prompt tokens, EOS, pad…]``.

Optimisation, as the official ``text_grad`` attacker: a probability row over the vocabulary per
adversarial token, uniform at the start; every step draws one token per row (multinomial), the
gradient with respect to that one-hot is passed straight through to the probabilities (clipped
to [−1, 1]), Adam (lr 0.01, coupled weight decay 0.1) updates them and every row is projected
back onto the probability simplex (bisection). Timesteps are fixed and visited in order:
t = T/n/2 + j·T/n for j = 0..n−1 (10, 30, …, 990 for n = 50), ``steps_per_timestep`` steps
each. With ``early_stop`` the target prompt itself is judged first (an image on the model under
test) and, after every timestep block, the argmax prompt; the search stops at the first success.

Deliberate differences from the official code, and why:

- *Tokens*: the official rows cover all 49,408 ids, special tokens included; here only the ids
  of :class:`~erasekit.attacks.vocabulary.Vocabulary` carry probability (no special token — the
  official decoder deletes them from the text anyway —, no token containing a banned word).
- *Seeded*: noise and token draws come from a generator seeded by (``seed``, restart).
- *Target images* are drawn with the run's sampler (the official: LMS, 25 steps, guidance 7.5
  on SD v1.4; set ``target_steps`` / ``target_guidance`` to match).
- ``drop_banned_words`` (off by default, as the official) removes the banned words from the
  target prompt, so the adversarial prompt never names the erased concept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from erasekit.attacks.base import Attack, AttackResult, progress_bar, rng_seed, short
from erasekit.attacks.cache import AttackCache
from erasekit.attacks.settings import UnlearnDiffAtkSettings
from erasekit.attacks.tokens import (
    allowed_mask,
    encode_spliced_tokens,
    max_positions,
    pad_token_id,
    prompt_ids,
    simplex_projection,
    token_table,
)
from erasekit.attacks.vocabulary import Vocabulary, drop_banned_words
from erasekit.models.conditioning import (
    Conditioning,
    context_encoder,
    sdxl_time_ids,
    unet_output,
    weight_dtype,
)
from erasekit.models.families import SDXL, family_of
from erasekit.registry import ATTACKS

ATTACK_VERSION = "unlearndiffatk/1"


def fixed_timesteps(n: int, total: int = 1000) -> list[int]:
    """The official schedule: n evenly spaced timesteps, centred in their intervals."""
    stride = total // n
    return [stride // 2 + j * stride for j in range(n)]


def noised(z0: torch.Tensor, noise: torch.Tensor, t: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t z₀ + √(1−ᾱ_t) ε (DDPM forward noising)."""
    a = alphas_cumprod[int(t)].to(z0.dtype)
    return a.sqrt() * z0 + (1 - a).sqrt() * noise


def unlearndiff_loss(unet: Any, z0: torch.Tensor, noise: torch.Tensor, t: int, alphas_cumprod: torch.Tensor,
                     cond: Conditioning | torch.Tensor, prediction_type: str = "epsilon") -> torch.Tensor:
    """MSE(ε_θ(x_t, t, c_adv), ε) — UnlearnDiffAtk's denoising loss (mean over elements).

    On a v-prediction model (SD 2.x-768) the UNet predicts v = √ᾱ ε − √(1−ᾱ) z₀, so the target
    is that v (the official code targets ε on SD 1.4, where the two coincide with the model's
    own training loss); any other prediction type is an error, not a silently wrong loss.
    """
    x = noised(z0, noise, t, alphas_cumprod).to(weight_dtype(unet))
    tt = torch.tensor([int(t)], device=x.device)
    pred = unet_output(unet, x, tt, cond)
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        a = alphas_cumprod[int(t)].to(z0.dtype)
        target = a.sqrt() * noise - (1 - a).sqrt() * z0
    else:
        raise ValueError(f"UnlearnDiffAtk: prediction type {prediction_type!r} is not supported (epsilon or v_prediction)")
    return F.mse_loss(pred.float(), target.float())


class _STESample(torch.autograd.Function):
    """Forward: one token per row drawn from the probabilities; backward: the gradient of the
    one-hot passed to the probabilities, clipped to [−1, 1] (the official straight-through rule)."""

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor, gen: Any) -> torch.Tensor:
        idx = torch.multinomial(probs.detach().cpu().float(), 1, generator=gen).to(probs.device)
        return torch.zeros_like(probs).scatter_(1, idx, 1.0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.clamp(-1, 1), None


@ATTACKS.register("unlearndiffatk", description="UnlearnDiffAtk: prefix tokens that let the erased UNet denoise a target image.",
                  aliases=("unlearn_diff_atk",))
class UnlearnDiffAtk(Attack):
    """UnlearnDiffAtk on one pipeline (its UNet, text encoder, tokenizer and scheduler)."""

    name: ClassVar[str] = "unlearndiffatk"
    version: ClassVar[str] = ATTACK_VERSION
    families: ClassVar[tuple[str, ...]] = ("sd1", "sd2", "sdxl")  # SDXL: both encoders spliced, pooled text + size ids

    def __init__(self, pipe: Any, model_fingerprint: str, target_of: Callable[[str], torch.Tensor],
                 target_identity: dict[str, Any], settings: UnlearnDiffAtkSettings | None = None, banned: Sequence[str] = (),
                 judge: Callable[[str], bool] | None = None, judge_identity: dict[str, Any] | None = None,
                 cache: AttackCache | None = None, progress: bool = True) -> None:
        super().__init__(settings or UnlearnDiffAtkSettings(), cache, progress)
        self.pipe = pipe
        self.model_fingerprint = model_fingerprint
        self.target_of = target_of
        self.target_identity = target_identity
        self.judge = judge if self.settings.early_stop else None
        self.judge_identity = judge_identity or {}
        te = context_encoder(pipe)
        self.te = te
        self.sdxl = family_of(pipe) == SDXL
        self.vocab = Vocabulary(pipe.tokenizer, banned, int(te.get_input_embeddings().weight.shape[0]))
        self.length = max_positions(te, pipe.tokenizer)
        self.pad = pad_token_id(pipe.tokenizer, self.vocab.eos)
        # the k slots are overwritten by the splice; any id but EOS marks them (an EOS there would end
        # the text for SDXL's second tokenizer and for the pooled end-of-text state)
        self.placeholder = int(self.vocab.allowed[0])
        if self.settings.n_tokens + 3 > self.length:
            raise ValueError(f"n_tokens={self.settings.n_tokens} leaves no room for the prompt in {self.length} positions")

    def reads(self) -> dict[str, str]:
        return {"model": self.model_fingerprint}

    def params(self) -> dict[str, Any]:
        s = self.settings.model_dump(exclude={"seed", "n_candidates"})
        return {**s, "target_image": self.target_identity, "judge": self.judge_identity if self.judge else None,
                "banned": sorted(self.vocab.banned), "vocab": "ascii-printable"}

    def modules(self) -> list[Any]:
        return [self.pipe.unet, self.te]

    def prompt_text(self, target: str) -> str:
        return drop_banned_words(target, self.vocab.banned) if self.settings.drop_banned_words else target

    def template(self, prompt: str) -> torch.Tensor:
        """[1, L] ids: BOS, k placeholder slots, the prompt's tokens, EOS, then the tokenizer's padding
        (as the pipeline encodes the decoded prompt: EOS on SD 1.x, "!" on SD 2.x)."""
        k = self.settings.n_tokens
        body = prompt_ids(self.pipe.tokenizer, prompt, self.length - k)
        ids = [self.vocab.bos] + [self.placeholder] * k + body + [self.vocab.eos]
        ids += [self.pad] * (self.length - len(ids))
        return torch.tensor([ids[: self.length]], dtype=torch.long)

    def condition(self, out: Any, size: tuple[int, int]) -> Conditioning:
        """The UNet conditioning of one text-path output (SDXL: + bigG's pooled text and the size ids)."""
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if not self.sdxl:
            return Conditioning(hidden)
        return Conditioning(hidden, out.text_embeds, sdxl_time_ids(size[0], size[1], 1, hidden.dtype, hidden.device))

    def adversarial_prompt(self, adv_ids: Sequence[int], prompt: str) -> str:
        return " ".join(p for p in (self.vocab.decode(adv_ids), prompt) if p)

    def search(self, target: str, restart: int = 0) -> AttackResult:
        s = self.settings
        pipe = self.pipe
        te, unet = self.te, pipe.unet
        device = unet.device
        gen = torch.Generator().manual_seed(rng_seed(self.name, s.seed, restart))
        t0 = time.perf_counter()
        prompt = self.prompt_text(target)
        extra: dict[str, Any] = {"attacked_prompt": prompt}
        if self.judge is not None:
            pre = bool(self.judge(prompt))
            extra["pre_attack_success"] = pre
            if pre:  # the prompt alone already brings the concept back: nothing to attack
                extra.update(attack_success=True, stopped_at_timestep=None)
                return AttackResult(target=target, prompt=prompt, token_ids=[], loss=float("nan"), restart=int(restart),
                                    seed=s.seed, steps_run=0, seconds=round(time.perf_counter() - t0, 3), extra=extra)
        z0 = self.target_of(target).to(device=device, dtype=torch.float32)
        ac = pipe.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        pred_type = str(getattr(pipe.scheduler.config, "prediction_type", "epsilon"))
        n_vocab = int(token_table(te).shape[0])
        mask = allowed_mask(n_vocab, self.vocab.allowed, device)
        ids = self.template(prompt).to(device)
        positions = list(range(1, 1 + s.n_tokens))
        size = (int(z0.shape[-2]) * pipe.vae_scale_factor, int(z0.shape[-1]) * pipe.vae_scale_factor)
        probs = torch.zeros(s.n_tokens, n_vocab, device=device)
        probs[:, mask] = 1.0 / int(mask.sum())
        probs.requires_grad_(True)
        opt = torch.optim.Adam([probs], lr=s.lr, weight_decay=s.weight_decay)
        steps = fixed_timesteps(s.timesteps, int(len(ac)))
        bar = progress_bar(len(steps) * s.steps_per_timestep, f"UnlearnDiffAtk '{short(target)}' #{restart}", self.progress)
        curve: list[float] = []
        loss_v = float("nan")
        success = False
        stopped = None
        try:
            for t in steps:
                block = []
                for _ in range(s.steps_per_timestep):
                    one_hot = _STESample.apply(probs, gen)
                    cond = self.condition(encode_spliced_tokens(te, ids, positions, one_hot[None]), size)
                    noise = torch.randn(z0.shape, generator=gen).to(device)
                    loss = unlearndiff_loss(unet, z0, noise, t, ac, cond, pred_type)
                    opt.zero_grad(set_to_none=True)
                    (grad,) = torch.autograd.grad(loss, probs)
                    probs.grad = grad.masked_fill(~mask[None], 0.0)
                    opt.step()
                    with torch.no_grad():
                        probs.data[:, mask] = simplex_projection(probs.data[:, mask])
                        probs.data[:, ~mask] = 0.0
                    self.steps_run += 1
                    block.append(float(loss.detach()))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(t=t, loss=f"{block[-1]:.4f}")
                loss_v = sum(block) / len(block)
                curve.append(round(loss_v, 6))
                if self.judge is not None:
                    adv = probs.detach().argmax(dim=1).tolist()
                    if self.judge(self.adversarial_prompt(adv, prompt)):
                        success, stopped = True, t
                        break
        finally:
            if bar is not None:
                bar.close()
        adv = probs.detach().argmax(dim=1).tolist()
        if self.judge is not None:
            extra.update(attack_success=success, stopped_at_timestep=stopped)
        return AttackResult(target=target, prompt=self.adversarial_prompt(adv, prompt), token_ids=adv, loss=loss_v,
                            restart=int(restart), seed=s.seed, steps_run=len(curve) * s.steps_per_timestep,
                            seconds=round(time.perf_counter() - t0, 3), loss_curve=curve, extra=extra)

    def describe(self) -> dict[str, Any]:
        return {
            "algorithm": ATTACK_VERSION,
            "loss": "MSE(eps_erased(sqrt(a_t) z0 + sqrt(1 - a_t) eps, t, c_adv), eps), fixed timesteps, no guidance",
            **self.settings.model_dump(),
            "target_image": self.target_identity,
            "judge": self.judge_identity if self.judge else None,
            "banned_substrings": list(self.vocab.banned),
            "allowed_tokens": len(self.vocab.allowed),
            "model_fingerprint": self.model_fingerprint,
        }
