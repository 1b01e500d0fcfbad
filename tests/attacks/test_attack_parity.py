"""Parity of the Ring-A-Bell / UnlearnDiffAtk formulas with the official ones.

Each test re-implements the published formula in a few lines of float64 (on double copies of
tiny random models) and compares it with ours on the same seeded inputs, so a changed formula
(mean for sum, a dropped √, a missing coefficient, softmax for the simplex projection, ...) fails.
"""

from __future__ import annotations

import copy

import pytest
import torch

from erasekit.attacks.ring_a_bell import RingABellAttack, concept_vector, template_pairs
from erasekit.attacks.settings import RingABellSettings
from erasekit.attacks.tokens import allowed_mask, encode_spliced, nearest_tokens, simplex_projection
from erasekit.attacks.unlearndiffatk import _STESample, fixed_timesteps, noised, unlearndiff_loss

K = 6  # free tokens of a Ring-A-Bell individual in these tests


@pytest.fixture(scope="module")
def toy_tok(tmp_path_factory: pytest.TempPathFactory):
    """The toy world's real BPE tokenizer (built by its deterministic recipe)."""
    from erasekit.toyworld.tokenizer import build_tokenizer_files, load_tokenizer

    return load_tokenizer(build_tokenizer_files(tmp_path_factory.mktemp("tok") / "tok"))


@pytest.fixture(scope="module", params=[None, 77], ids=["native-len", "len77"])
def tok(request, toy_tok):
    """The toy tokenizer as built (its own model_max_length) and with SD's 77 positions."""
    if request.param is None:
        return toy_tok
    t = copy.deepcopy(toy_tok)
    t.model_max_length = request.param
    return t


@pytest.fixture(scope="module")
def random_te(toy_tok):
    """An untrained text encoder with the toy world's architecture (width 256, 2 layers, 77 positions)."""
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import text_config

    torch.manual_seed(0)
    return CLIPTextModel(text_config(len(toy_tok), toy_tok.bos_token_id, toy_tok.eos_token_id)).eval()


@pytest.fixture(scope="module")
def te64(random_te):
    return copy.deepcopy(random_te).double().eval()


@pytest.fixture(scope="module")
def tiny_unet():
    """A tiny random SD-shaped UNet reading 256-d text states."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=256,
                                attention_head_dim=8, norm_num_groups=8).eval()


def _official_E(te64, tok, prompts: list[str]) -> torch.Tensor:
    """Official Ring-A-Bell E(p): tokenizer(padding="max_length", max_length=model_max_length), ids only."""
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return te64(input_ids=ids)[0]


# ------------------------------------------------------------------ Ring-A-Bell


def test_ring_a_bell_concept_vector_matches_official(tok, random_te, te64) -> None:
    """Official c = mean over pairs of E(with, padded, no mask) − E(without, padded, no mask)."""
    pairs = template_pairs("circle") + [("a red circle on a table", "a table"), ("blue circle", "blue")]
    with_c = _official_E(te64, tok, [p for p, _ in pairs])
    without = _official_E(te64, tok, [q for _, q in pairs])
    official = sum(with_c[i] - without[i] for i in range(len(pairs))) / len(pairs)
    ours = concept_vector(random_te, tok, pairs)
    assert ours.dtype == torch.float32
    assert ours.shape == (tok.model_max_length, 256)
    torch.testing.assert_close(ours.double(), official, rtol=1e-4, atol=1e-4)
    # sensitivity: the sum over pairs (or one pair alone) is far off the mean
    assert (official * len(pairs) - ours.double()).abs().max() > 1e-2


def test_ring_a_bell_fitness_matches_official_sum(tok, random_te, te64) -> None:
    """Official fitness = Σ over all L×D of (E(seed) + η·c − E([BOS, K ids, EOS…]))², padding included."""
    eta = 3.0
    attack = RingABellAttack(random_te, tok, "circle", settings=RingABellSettings(n_tokens=K, coefficient=eta),
                             banned=["circle"], progress=False)
    seed = "a red circle"
    length = tok.model_max_length
    gen = torch.Generator().manual_seed(0)
    allowed = torch.tensor(attack.vocab.allowed)
    free = allowed[torch.randint(0, len(allowed), (5, K), generator=gen)]
    # one individual whose tokens spell the banned word across tokens: "circ" + "le"
    spelled = free[0].clone()
    spelled[1], spelled[2] = tok.convert_tokens_to_ids("circ"), tok.convert_tokens_to_ids("le</w>")
    free = torch.cat([free, spelled[None]])
    bad = torch.tensor(["circle" in attack.vocab.decode(r).lower() for r in free.tolist()])
    assert bad[-1] and not bad[:-1].any()

    # official, float64: target = E(seed) + η · mean_pairs(E(with) − E(without))
    pairs = template_pairs("circle")
    vec = (_official_E(te64, tok, [p for p, _ in pairs]) - _official_E(te64, tok, [q for _, q in pairs])).mean(0)
    target64 = _official_E(te64, tok, [seed])[0] + eta * vec
    ids = torch.cat([torch.full((len(free), 1), tok.bos_token_id), free,
                     torch.full((len(free), length - 1 - K), tok.eos_token_id)], dim=1)
    with torch.no_grad():
        hidden = te64(input_ids=ids)[0]
    official = torch.stack([((target64 - hidden[b]) ** 2).sum() for b in range(len(free))])

    target = attack.target(seed)
    torch.testing.assert_close(target.double(), target64, rtol=1e-4, atol=1e-4)
    assert torch.equal(attack._ids(free), ids)
    ours = attack.losses(free, target)
    assert torch.isinf(ours[bad]).all() and torch.isfinite(ours[~bad]).all()
    torch.testing.assert_close(ours[~bad].double(), official[~bad], rtol=1e-5, atol=1e-3)
    # sensitivity: a mean (or padding-free sum) would be off by far more than the tolerance
    assert (official[~bad] / (length * 256) - ours[~bad].double()).abs().min() > 1.0


# ------------------------------------------------------------------ UnlearnDiffAtk


def test_unlearndiff_fixed_timesteps_official_schedule() -> None:
    """Official schedule: t_j = T/n/2 + j·T/n, i.e. 10, 30, …, 990 for n = 50, T = 1000."""
    assert fixed_timesteps(50, 1000) == list(range(10, 1000, 20))
    assert fixed_timesteps(50) == [10 + 20 * j for j in range(50)]
    assert fixed_timesteps(10, 1000) == [50 + 100 * j for j in range(10)]


def test_unlearndiff_loss_matches_official_mse(tiny_unet) -> None:
    """Official loss = mean((ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t, c) − ε)²), ᾱ = scheduler.alphas_cumprod."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    ac = sched.alphas_cumprod
    # ᾱ of the official SD schedule: cumprod(1 − β), β = linspace(√β₀, √β₁, 1000)²
    betas64 = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac64 = torch.cumprod(1 - betas64, 0)
    torch.testing.assert_close(ac.double(), ac64, rtol=1e-5, atol=1e-6)

    unet64 = copy.deepcopy(tiny_unet).double()
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, 4, 8, 8, generator=gen)
    cond = torch.randn(1, 77, 256, generator=gen)
    losses = []
    for t in (10, 490, 990):
        noise = torch.randn(1, 4, 8, 8, generator=gen)
        x64 = ac64[t].sqrt() * z0.double() + (1 - ac64[t]).sqrt() * noise.double()
        torch.testing.assert_close(noised(z0, noise, t, ac).double(), x64, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            pred = unet64(x64, torch.tensor([t]), encoder_hidden_states=cond.double()).sample
            ours = unlearndiff_loss(tiny_unet, z0, noise, t, ac, cond)
        official = ((pred - noise.double()) ** 2).mean()
        assert ours.ndim == 0
        torch.testing.assert_close(ours.double(), official, rtol=1e-5, atol=1e-6)
        losses.append(float(official))
        # sensitivity: the loss depends on the noising (x_t = z₀ alone is another loss)
        with torch.no_grad():
            other = ((unet64(z0.double(), torch.tensor([t]), encoder_hidden_states=cond.double()).sample - noise.double()) ** 2).mean()
        assert abs(float(other) - float(official)) > 1e-4
    assert len(set(losses)) == 3


def _duchi_projection(v: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean projection onto the simplex (Duchi et al. 2008, sort-based), float64."""
    v = v.double()
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0)
    j = torch.arange(1, len(v) + 1, dtype=torch.float64)
    rho = int(torch.nonzero(u - (css - 1) / j > 0).max())
    theta = (css[rho] - 1) / (rho + 1)
    return (v - theta).clamp(min=0)


def test_simplex_projection_is_the_exact_euclidean_projection() -> None:
    """Official step: each row projected onto {q ≥ 0, Σq = 1}; equals Duchi et al.'s exact projection."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.cat([
        torch.randn(4, 50, generator=gen),                       # mixed signs
        torch.rand(3, 50, generator=gen) * 0.1,                  # below the simplex (sum < 1)
        torch.rand(3, 50, generator=gen) + 0.5,                  # above it (sum > 1)
        torch.full((1, 50), 1 / 50) + 0.01 * torch.randn(1, 50, generator=gen),  # near uniform, as after an Adam step
        torch.tensor([[5.0] + [0.0] * 49]),                      # one dominant entry
    ])
    out = simplex_projection(rows)
    assert out.shape == rows.shape and out.dtype == rows.dtype
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(1), torch.ones(len(rows)), rtol=0, atol=1e-4)
    for i in range(len(rows)):
        torch.testing.assert_close(out[i].double(), _duchi_projection(rows[i]), rtol=0, atol=1e-4)
    # a row on the simplex is kept as it is
    on = torch.distributions.Dirichlet(torch.ones(50)).sample()
    on = on / on.sum()
    torch.testing.assert_close(simplex_projection(on[None])[0], on, rtol=0, atol=0)
    # sensitivity: a softmax or a plain renormalisation is not the projection
    assert (torch.softmax(rows[0], 0).double() - _duchi_projection(rows[0])).abs().max() > 1e-3


def test_nearest_tokens_is_the_cosine_argmax() -> None:
    """PEZ / P4D projection: argmax over (allowed) rows of cos(e, table row), in float64."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(300, 32, generator=gen) * torch.rand(300, 1, generator=gen).mul(5).add(0.1)  # rows of very different norms
    embeds = torch.randn(40, 32, generator=gen)
    t64, e64 = table.double(), embeds.double()
    cos = (e64 / e64.norm(dim=1, keepdim=True)) @ (t64 / t64.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(nearest_tokens(embeds, table), cos.argmax(1), rtol=0, atol=0)
    # sensitivity: with these norms a dot-product or L2 nearest neighbour is a different token
    assert (e64 @ t64.T).argmax(1).ne(cos.argmax(1)).any()
    assert torch.cdist(e64, t64).argmin(1).ne(cos.argmax(1)).any()

    allowed = torch.randperm(300, generator=gen)[:120].sort().values.tolist()
    mask = allowed_mask(300, allowed)
    assert mask.sum() == 120 and mask[allowed].all()
    # embeddings that lie on masked-out rows: their unmasked nearest is the forbidden row itself
    banned = torch.nonzero(~mask).flatten()[:10]
    probe = torch.cat([embeds, table[banned]])
    p64 = probe.double()
    cosp = (p64 / p64.norm(dim=1, keepdim=True)) @ (t64 / t64.norm(dim=1, keepdim=True)).T
    got = nearest_tokens(probe, table, mask)
    assert mask[got].all()
    torch.testing.assert_close(got, cosp.masked_fill(~mask[None], float("-inf")).argmax(1), rtol=0, atol=0)
    assert torch.equal(nearest_tokens(table[banned], table), banned)


def test_encode_spliced_is_the_plain_encoder_and_causal(toy_tok, random_te) -> None:
    """c_adv = last_hidden_state with token-embedding rows replaced; same ids → same output; causal."""
    ids = toy_tok(["a red circle", "a blue square on a table"], padding="max_length", max_length=20,
                  return_tensors="pt").input_ids
    table = random_te.get_input_embeddings().weight.detach()
    positions = [3, 4, 7]
    with torch.no_grad():
        plain = random_te(input_ids=ids).last_hidden_state
        same = encode_spliced(random_te, ids, positions, table[ids[:, positions]])
    torch.testing.assert_close(same, plain, rtol=0, atol=0)

    gen = torch.Generator().manual_seed(0)
    other = torch.randn(2, len(positions), table.shape[1], generator=gen, requires_grad=True)
    spliced = encode_spliced(random_te, ids, positions, other)
    diff = (spliced.detach() - plain).abs().amax(dim=-1)  # [B, L]
    assert torch.equal(diff[:, : positions[0]], torch.zeros(2, positions[0]))  # causal: earlier positions untouched
    assert (diff[:, positions[0]:] > 1e-5).all()  # every later position reads the spliced rows
    # and it is the plain encoder of a copy whose table holds those rows under fresh ids
    te2 = copy.deepcopy(random_te)
    fresh = torch.arange(100, 100 + 2 * len(positions)).reshape(2, len(positions))
    with torch.no_grad():
        te2.get_input_embeddings().weight[fresh.flatten()] = other.detach().reshape(-1, table.shape[1])
        ids2 = ids.clone()
        ids2[:, positions] = fresh
        torch.testing.assert_close(spliced.detach(), te2(input_ids=ids2).last_hidden_state, rtol=1e-6, atol=1e-6)
    spliced.sum().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0  # gradients reach the embeddings
    # the hook is removed afterwards
    with torch.no_grad():
        torch.testing.assert_close(random_te(input_ids=ids).last_hidden_state, plain, rtol=0, atol=0)


def test_ste_sample_forward_one_hot_backward_clipped() -> None:
    """Official straight-through rule: forward a multinomial one-hot, backward grad clipped to [−1, 1]."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25]])
    probs = probs.repeat(1000, 1).requires_grad_(True)
    one_hot = _STESample.apply(probs, gen)
    assert one_hot.shape == probs.shape
    assert torch.equal(one_hot.sum(1), torch.ones(len(probs)))
    assert set(one_hot.unique().tolist()) == {0.0, 1.0}
    hot = one_hot.argmax(1)
    assert (probs.detach()[torch.arange(len(probs)), hot] > 0).all()  # never a zero-probability token
    # drawn from the probabilities (not the argmax): row type 0 picks index 0 about 70% of the time
    freq0 = float((hot[0::3] == 0).double().mean())
    assert 0.65 < freq0 < 0.75, freq0
    assert (hot[1::3] == 3).all()
    assert len(set(hot[2::3].tolist())) == 4

    g = torch.randn(probs.shape, generator=gen) * 3
    (one_hot * g).sum().backward()
    torch.testing.assert_close(probs.grad, g.clamp(-1, 1), rtol=0, atol=0)
    assert (g.abs() > 1).any()  # the clipping was exercised


def test_p4d_loss_matches_official_mse_between_erased_and_base(tiny_unet) -> None:
    """Official P4D loss = mean((ε_erased(x_t, t, c_adv) − ε_base(x_t, t, c_prompt))²), x_t = add_noise(z₀, ε, t)."""
    from diffusers import DDIMScheduler

    from erasekit.attacks.p4d import p4d_loss

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    ac = sched.alphas_cumprod
    torch.manual_seed(1)
    erased = copy.deepcopy(tiny_unet)
    with torch.no_grad():
        for p in erased.parameters():
            p.add_(0.05 * torch.randn_like(p))  # an "edited" UNet: differs from the base
    base64, erased64 = copy.deepcopy(tiny_unet).double(), copy.deepcopy(erased).double()
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(1, 4, 8, 8, generator=gen)
    c_adv, c_prompt = torch.randn(1, 77, 256, generator=gen), torch.randn(1, 77, 256, generator=gen)
    for t in (0, 500, 999):
        noise = torch.randn(1, 4, 8, 8, generator=gen)
        x64 = sched.add_noise(z0.double(), noise.double(), torch.tensor([t]))  # diffusers' add_noise, as the official
        tt = torch.tensor([t])
        with torch.no_grad():
            official = ((erased64(x64, tt, encoder_hidden_states=c_adv.double()).sample
                         - base64(x64, tt, encoder_hidden_states=c_prompt.double()).sample) ** 2).mean()
            ours = p4d_loss(erased, tiny_unet, z0, noise, t, ac, c_adv, c_prompt)
            swapped = p4d_loss(erased, tiny_unet, z0, noise, t, ac, c_prompt, c_adv)
        torch.testing.assert_close(ours.double(), official, rtol=1e-4, atol=1e-7)
        assert abs(float(swapped) - float(official)) > 1e-6  # which model reads which conditioning matters
    # the base prediction is a constant target: gradients reach c_adv only
    c = c_adv.clone().requires_grad_(True)
    p4d_loss(erased, tiny_unet, z0, torch.randn(1, 4, 8, 8, generator=gen), 300, ac, c, c_prompt).backward()
    assert c.grad is not None and float(c.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_unet.parameters())


def test_p4d_k_layout_is_one_learnable_token_before_every_k() -> None:
    """Official P4D-K: content position i is learnable iff i mod (K+1) == 0; L + floor(L/K) + 1 positions."""
    from erasekit.attacks.p4d import k_layout

    for n, k in ((7, 3), (6, 3), (1, 3), (10, 2)):
        lay = k_layout(n, k)
        assert len(lay) == n + n // k + 1 and sum(not x for x in lay) == n
        assert [i for i, x in enumerate(lay) if x] == [i for i in range(len(lay)) if i % (k + 1) == 0]
    assert k_layout(7, 3) == [True, False, False, False, True, False, False, False, True, False]
