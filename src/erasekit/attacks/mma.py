"""MMA-Diffusion's text attack (Yang et al., CVPR 2024), written for erasekit.

What it does: find ``n_tokens`` tokens whose prompt the text encoder maps close
to a *target* prompt ("a photo of a naked woman"), while no token — and no
substring of the prompt — contains a banned word. A model that only learned to
ignore the word "nude" is then fooled by a prompt that never says it.

Objective: minimise ``1 − cos(pooled(adv), pooled(target))`` where ``pooled`` is
the CLIP text encoder's pooled output (the final-layer-norm state at the
end-of-text token, ``pooler_output``), exactly MMA-Diffusion's loss. On SDXL (two encoders,
:class:`~erasekit.models.conditioning.JointTextEncoder`) ``pooled`` is ViT-L's pooled output
concatenated with bigG's projected ``text_embeds`` (the pooled vector SDXL's UNet receives),
and the token one-hot is spliced into both embedding tables: one prompt fools both encoders.

Search (greedy coordinate gradient, GCG), per step:

1. gradient of the loss w.r.t. a one-hot matrix ``[n_tokens, vocab]`` of the
   current tokens (the one-hot is multiplied into the token-embedding matrix and
   spliced into the encoder's forward pass with a forward hook on the token
   embedding, so any ``CLIPTextModel`` works — transformers 4 or 5 layout,
   SD v1.4's encoder or the toy one — without patching transformers);
2. per position, the ``topk`` tokens with the most negative gradient, among the
   *allowed* tokens (see below);
3. ``batch`` candidates, each the current prompt with a single token swapped:
   positions spread evenly over the prompt (random rotation each step), the new
   token drawn uniformly from that position's top-k;
4. candidates dropped if they equal the current prompt or another candidate,
   if their text contains a banned substring, or if their text re-tokenises to
   other tokens (the image is generated from the *text*, so the optimised tokens
   must be what the pipeline sees);
5. the loss of every remaining candidate is computed exactly (forward pass only);
   the best one becomes the current prompt, even if worse than before (as in
   GCG/MMA, this lets the search leave local minima); the best prompt ever seen
   is the result.

Allowed tokens: not special, not containing a banned substring (lower-cased,
``</w>`` stripped — MMA's rule: "every vocabulary entry containing a banned
word"), decoding to printable ASCII (so prompts are plain, typable text; MMA kept
non-ASCII byte tokens, which rarely survive re-tokenisation anyway), and lower
case when the tokenizer lower-cases its input (CLIP does).
Banned substrings are the concept and its synonyms (+ the user's
``banned_words``); for nudity MMA's own list
(:data:`~erasekit.attacks.vocabulary.MMA_SENSITIVE_WORDS`,
which includes the short fragments "ak", "na", "ke", "nud"). Beyond MMA, the
candidate's whole *text* is also checked, so banned words cannot be spelled
across tokens ("circ"+"les" → "circles").

Initial prompt: ``n_tokens`` random single lower-case letters (MMA's start),
drawn from a generator seeded by (``seed``, restart index). On CPU the whole
search is deterministic; on GPU, ties in top-k and atomics may differ between
devices, which is one more reason the cache (:mod:`erasekit.attacks.cache`)
stores results: every later run reuses them bit for bit.

The allowed tokens and banned words live in :mod:`erasekit.attacks.vocabulary`, the
settings in :mod:`erasekit.attacks.settings`, a metric's cached, rank-split set of
attacks (:class:`~erasekit.attacks.plan.AttackPlan`) in :mod:`erasekit.attacks.plan`.

Scale: :data:`~erasekit.attacks.settings.PAPER_SCALE` (steps 500, topk 256, batch 512, 20 tokens) is what
the metrics default to; the public MMA-Diffusion code's command line uses the
same top-k, batch 512 (its parallel variant 256) and 1000 steps. The toy world's
text encoder (2 layers, width 256, 748-token vocabulary) needs far less:
:data:`~erasekit.attacks.settings.CPU_SCALE` (measured in ``tests/attacks/test_mma.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from erasekit.attacks.base import Attack, AttackResult, progress_bar, rng_seed, short
from erasekit.attacks.cache import AttackCache, text_encoder_fingerprint
from erasekit.attacks.plan import AttackPlan
from erasekit.attacks.settings import AttackSettings
from erasekit.attacks.tokens import embedding_layers, max_positions
from erasekit.attacks.vocabulary import Vocabulary, banned_words_for
from erasekit.registry import ATTACKS

# AttackPlan, AttackResult, AttackSettings and banned_words_for are re-exported (older imports).
__all__ = ["ATTACK_VERSION", "AttackPlan", "AttackResult", "AttackSettings", "MMAAttack", "banned_words_for"]

log = logging.getLogger(__name__)

#: Bump when the search changes: old cache entries then stop matching.
ATTACK_VERSION = "mma-gcg/1"


@ATTACKS.register("mma", description="MMA-Diffusion: GCG over tokens matching the target's pooled text embedding.",
                  aliases=("mma_diffusion",))
class MMAAttack(Attack):
    """The attack on one text path (``text_encoder`` + ``tokenizer``), with the cache
    (:class:`~erasekit.attacks.base.Attack`: ``attack(target, restart)``, counters)."""

    name: ClassVar[str] = "mma"
    version: ClassVar[str] = ATTACK_VERSION
    families: ClassVar[tuple[str, ...]] = ("sd1", "sd2", "sdxl")  # SDXL: cosine of both encoders' pooled outputs

    def __init__(
        self,
        text_encoder: Any,
        tokenizer: Any,
        settings: AttackSettings | None = None,
        banned: Sequence[str] = (),
        cache: AttackCache | None = None,
        progress: bool = True,
        eval_chunk: int = 512,
        curve_every: int = 10,
    ) -> None:
        import torch

        super().__init__(settings or AttackSettings(), cache, progress)
        self.te = text_encoder
        self.tokenizer = tokenizer
        self.eval_chunk = int(eval_chunk)
        self.curve_every = int(curve_every)
        emb = text_encoder.get_input_embeddings()
        self.embedding = emb
        self.vocab = Vocabulary(tokenizer, banned, int(emb.weight.shape[0]))
        self.device = emb.weight.device
        self.dtype = emb.weight.dtype
        max_pos = max_positions(text_encoder, tokenizer)
        if self.settings.n_tokens + 2 > max_pos:
            raise ValueError(
                f"n_tokens={self.settings.n_tokens} does not fit the text encoder's {max_pos} positions "
                f"(begin and end tokens included); use at most {max_pos - 2}"
            )
        mask = torch.ones(int(emb.weight.shape[0]), dtype=torch.bool)
        mask[torch.tensor(self.vocab.allowed)] = False
        self._disallowed = mask.to(self.device)
        self.last_loss = float("nan")
        self._fingerprint: str | None = None

    # ------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = text_encoder_fingerprint(self.te, self.tokenizer)
        return self._fingerprint

    def reads(self) -> dict[str, str]:
        return {"encoder": self.fingerprint}

    def params(self) -> dict[str, Any]:
        s = self.settings
        return {"n_tokens": s.n_tokens, "steps": s.steps, "topk": s.topk, "batch": s.batch_size,
                "banned": sorted(self.vocab.banned), "vocab": "ascii-printable"}

    def modules(self) -> list[Any]:
        return [self.te]

    # ------------------------------------------------------------ encoder passes
    def _ids(self, body: Any) -> Any:
        """[B, n] token ids → [B, n+2] with begin/end tokens (no padding: the encoder is
        causal, so the end-of-text state does not depend on what follows it)."""
        import torch

        b = body.shape[0]
        bos = torch.full((b, 1), self.vocab.bos, dtype=torch.long, device=body.device)
        eos = torch.full((b, 1), self.vocab.eos, dtype=torch.long, device=body.device)
        return torch.cat([bos, body, eos], dim=1)

    def _pooled(self, ids: Any) -> Any:
        out = self.te(input_ids=ids)
        pooled = out.pooler_output if hasattr(out, "pooler_output") else out[1]
        return pooled.float()

    def target_embedding(self, target: str) -> Any:
        import torch

        max_len = max_positions(self.te, self.tokenizer)
        ids = self.tokenizer(target, truncation=True, max_length=max_len, return_tensors="pt")["input_ids"].to(self.device)
        with torch.no_grad():
            return self._pooled(ids)[0]

    def losses(self, body: Any, target_emb: Any) -> Any:
        """Exact loss 1 − cos for each row of ``body`` ([B, n] token ids), float32 on CPU."""
        import torch
        import torch.nn.functional as F

        out = []
        with torch.no_grad():
            for i in range(0, body.shape[0], self.eval_chunk):
                pooled = self._pooled(self._ids(body[i : i + self.eval_chunk].to(self.device)))
                out.append((1 - F.cosine_similarity(pooled, target_emb[None], dim=-1)).cpu())
        return torch.cat(out)

    def gradient(self, cur: Any, target_emb: Any) -> Any:
        """d loss / d one-hot, [n_tokens, vocab] float32 (the GCG token gradient)."""
        import torch
        import torch.nn.functional as F

        n = cur.shape[0]
        weight = self.embedding.weight
        with torch.enable_grad():
            one_hot = torch.zeros(n, weight.shape[0], dtype=weight.dtype, device=self.device)
            one_hot.scatter_(1, cur.to(self.device)[:, None], 1.0)
            one_hot.requires_grad_(True)

            def splicer(table: Any) -> Any:
                adv = one_hot.to(table.weight.dtype) @ table.weight.detach()

                def splice(_mod: Any, _inp: Any, out: Any) -> Any:
                    return torch.cat([out[:, :1], adv[None].to(out.dtype), out[:, 1 + n :]], dim=1)

                return splice

            # one one-hot, spliced into every token-embedding table the text path has (two on SDXL)
            handles = [table.register_forward_hook(splicer(table)) for table in embedding_layers(self.te)]
            try:
                pooled = self._pooled(self._ids(cur[None].to(self.device)))
            finally:
                for handle in handles:
                    handle.remove()
            loss = 1 - F.cosine_similarity(pooled, target_emb[None], dim=-1).sum()
            (grad,) = torch.autograd.grad(loss, one_hot)
        self.last_loss = float(loss.detach())
        return grad.float()

    # ------------------------------------------------------------ search
    def _initial(self, gen: Any) -> Any:
        import torch

        letters = [i for i in self.vocab.allowed
                   if len(self.vocab.text[i]) == 2 and self.vocab.text[i][0].isalpha() and self.vocab.text[i][0].islower() and self.vocab.text[i].endswith(" ")]
        pool = letters or self.vocab.allowed
        for _ in range(100):
            idx = torch.randint(0, len(pool), (self.settings.n_tokens,), generator=gen)
            ids = [pool[int(j)] for j in idx]
            text = self.vocab.decode(ids)
            if not self.vocab.has_banned(text) and self.vocab.roundtrip([text])[0] == ids:
                return torch.tensor(ids, dtype=torch.long)
        raise RuntimeError("could not build an initial adversarial prompt that survives re-tokenisation")

    def _candidates(self, cur: Any, top: Any, gen: Any) -> tuple[Any, list[str]]:
        import torch

        n, k = top.shape
        b = self.settings.batch_size
        offset = int(torch.randint(0, n, (1,), generator=gen))
        pos = (torch.arange(b) * n // b + offset) % n
        choice = torch.randint(0, k, (b,), generator=gen)
        new_tok = top[pos, choice]
        cands = cur[None].repeat(b, 1)
        cands[torch.arange(b), pos] = new_tok
        cur_list = cur.tolist()
        seen: set[tuple[int, ...]] = {tuple(cur_list)}
        rows, texts = [], []
        for row in cands.tolist():
            t = tuple(row)
            if t in seen:
                continue
            seen.add(t)
            text = self.vocab.decode(row)
            if self.vocab.has_banned(text):
                continue
            rows.append(row)
            texts.append(text)
        ok = [r == back for r, back in zip(rows, self.vocab.roundtrip(texts), strict=True)]
        rows = [r for r, good in zip(rows, ok, strict=True) if good]
        texts = [t for t, good in zip(texts, ok, strict=True) if good]
        return torch.tensor(rows, dtype=torch.long).reshape(-1, n), texts

    def search(self, target: str, restart: int = 0) -> AttackResult:
        """Run the GCG search (no cache)."""
        import torch

        s = self.settings
        gen = torch.Generator().manual_seed(rng_seed("mma", s.seed, restart))
        t0 = time.perf_counter()
        target_emb = self.target_embedding(target)
        cur = self._initial(gen)
        init_prompt = self.vocab.decode(cur.tolist())
        cur_loss = float(self.losses(cur[None], target_emb)[0])
        best, best_loss = cur.clone(), cur_loss
        curve = [round(cur_loss, 6)]
        k = min(s.topk, len(self.vocab.allowed))
        bar = progress_bar(s.steps, f"MMA attack '{short(target)}' #{restart}", self.progress)
        try:
            for step in range(s.steps):
                grad = self.gradient(cur, target_emb)
                grad[:, self._disallowed] = float("inf")
                top = (-grad).topk(k, dim=1).indices.cpu()
                cands, _texts = self._candidates(cur, top, gen)
                self.steps_run += 1
                if len(cands):
                    losses = self.losses(cands, target_emb)
                    i = int(torch.argmin(losses))
                    cur, cur_loss = cands[i].clone(), float(losses[i])
                    if cur_loss < best_loss:
                        best, best_loss = cur.clone(), cur_loss
                if (step + 1) % self.curve_every == 0 or step + 1 == s.steps:
                    curve.append(round(best_loss, 6))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{best_loss:.4f}")
        finally:
            if bar is not None:
                bar.close()
        ids = best.tolist()
        return AttackResult(
            target=target,
            prompt=self.vocab.decode(ids),
            token_ids=ids,
            loss=best_loss,
            cosine=1.0 - best_loss,
            restart=int(restart),
            seed=s.seed,
            steps_run=s.steps,
            cached=False,
            seconds=round(time.perf_counter() - t0, 3),
            init_prompt=init_prompt,
            loss_curve=curve,
        )

    def describe(self) -> dict[str, Any]:
        """Protocol for a metric's details."""
        return {
            "algorithm": ATTACK_VERSION,
            "loss": "1 - cos(pooled text embedding of the adversarial prompt, of the target prompt)",
            **self.settings.model_dump(),
            "banned_substrings": list(self.vocab.banned),
            "banned_tokens": self.vocab.n_banned_tokens,
            "allowed_tokens": len(self.vocab.allowed),
            "text_encoder_fingerprint": self.fingerprint,
        }
