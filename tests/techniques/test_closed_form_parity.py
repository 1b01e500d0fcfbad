"""UCE, RECE and SPEED against float64 re-implementations of their official code, on SD v1.4's shapes.

The model is a randomly initialised UNet with SD v1.4's exact configuration (32
cross-attention K/V projections), ViT-L/14's text encoder and the real CLIP BPE
tokenizer (open_clip_torch's vocabulary, built offline): token positions decide
which rows each editor uses, so the real tokenizer matters. The references below
follow each official script line by line — per layer, every text encoded on its
own with the tokenizer's attention mask, the published defaults — in float64,
sharing nothing with erasekit but the text encoder. Bar: max |ours − ref| /
max |ref| ≤ 1e-4 over the edited matrices, for 1 and 10 concepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from erasekit.models.sd_shapes import open_clip_bpe, sd14_text_encoder, sd14_unet, sd_clip_tokenizer
from erasekit.techniques.closed_form import cross_attention_kv
from erasekit.techniques.rece import RECE, RECEConfig
from erasekit.techniques.speed import SPEED, SPEEDConfig
from erasekit.techniques.uce import UCE, UCEConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(open_clip_bpe() is None, reason="open_clip_torch (CLIP BPE vocabulary) not installed")]

TEN = ["dog", "cat", "horse", "van gogh", "church", "garbage truck", "parachute", "golf ball", "english springer", "snoopy"]
RETAIN = ["tree", "car", "mountain lake", "a red bicycle", "chair", "river", "monet", "bird", "cup of coffee", "city street",
          "lighthouse", "boat", "pizza", "guitar", "flower", "teddy bear", "laptop", "kite", "castle", "violin"]
TOL = 1e-4


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = sd_clip_tokenizer(tmp_path_factory.mktemp("tok"))
    unet, text = sd14_unet(0), sd14_text_encoder(1)
    with torch.no_grad():  # a trained CLIP's final LayerNorm has a non-zero affine part: without it every row has zero
        g = torch.Generator().manual_seed(2)  # mean, a null direction that makes a λ = 0 solve (official MACE) singular
        ln = text.final_layer_norm
        ln.weight.copy_(1 + 0.1 * torch.randn(ln.weight.shape, generator=g))
        ln.bias.copy_(0.1 * torch.randn(ln.bias.shape, generator=g))
    layers = cross_attention_kv(unet)
    assert len(layers) == 32  # SD v1.4: 16 cross-attention blocks × {to_k, to_v}
    base = {n: lin.weight.detach().clone() for n, lin in layers}
    return SimpleNamespace(pipe=SimpleNamespace(unet=unet, text_encoder=text, tokenizer=tok), layers=layers, base=base, tok=tok, text=text)


def _reset(sd) -> None:
    with torch.no_grad():
        for n, lin in sd.layers:
            lin.weight.copy_(sd.base[n])


def _edited(sd) -> dict[str, torch.Tensor]:
    return {n: lin.weight.detach().double() for n, lin in sd.layers}


def _rel(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    assert ref, "reference edited nothing"
    return max(float((ours[n] - r).abs().max() / r.abs().max()) for n, r in ref.items())


def _moved(ours: dict[str, torch.Tensor], sd, names) -> float:
    return max(float((ours[n] - sd.base[n].double()).abs().max()) for n in names)


@torch.no_grad()
def _embed(sd, text: str) -> tuple[torch.Tensor, int]:
    """The official way: one text, padded to 77, last hidden state (77 × d) and attention_mask.sum() - 2."""
    t = sd.tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    return sd.text(t.input_ids)[0][0].double(), int(t.attention_mask[0].sum()) - 2


def _solve_layer(w, lam, pairs_xy, keep, e_scale, p_scale):
    """mat1 = λW + e Σ (W y) xᵀ + p Σ (W k) kᵀ ; mat2 = λI + e Σ x xᵀ + p Σ k kᵀ ; W' = mat1 mat2⁻¹ (official loop)."""
    d = w.shape[1]
    mat1, mat2 = lam * w, lam * torch.eye(d, dtype=torch.float64)
    for x, y in pairs_xy:
        mat1 = mat1 + e_scale * (w @ y.T) @ x
        mat2 = mat2 + e_scale * x.T @ x
    for k in keep:
        mat1 = mat1 + p_scale * (w @ k.T) @ k
        mat2 = mat2 + p_scale * k.T @ k
    return mat1 @ torch.linalg.inv(mat2)


UCE_OBJECT_TEMPLATES = ["image of {}", "photo of {}", "portrait of {}", "picture of {}", "painting of {}"]


def _ref_uce_2025(sd, concepts, guide, preserve, expand, lam=0.5, e_scale=1.0, p_scale=1.0):
    erase, guides = list(concepts), [guide] * len(concepts)
    if expand:
        erase = [p for c in concepts for p in [c, *[t.format(c) for t in UCE_OBJECT_TEMPLATES]]]
        guides = [p for _ in concepts for p in [guide, *[t.format(guide) for t in UCE_OBJECT_TEMPLATES]]]
    def last(text):
        h, i = _embed(sd, text)
        return h[i : i + 1]
    pairs = [(last(e), last(g)) for e, g in zip(erase, guides, strict=True)]
    keep = [last(p) for p in preserve]
    return {n: _solve_layer(sd.base[n].double(), lam, pairs, keep, e_scale, p_scale) for n, _ in sd.layers}


def _uce_2023_rows(sd, concepts, guide, preserve):
    pairs = []
    for c in concepts:
        old, i = _embed(sd, c)
        new, j = _embed(sd, guide)
        f = max(i, j)
        pairs.append((old[i : 77 - (f - i)], new[j : 77 - (f - j)]))
    retain = ["", *preserve]
    return pairs, [_embed(sd, r)[0] for r in retain], max(0.1, 1 / len(retain))


def _ref_uce_2023(sd, concepts, guide, preserve, lam=0.5):
    pairs, keep, p_scale = _uce_2023_rows(sd, concepts, guide, preserve)
    return {n: _solve_layer(sd.base[n].double(), lam, pairs, keep, 1.0, p_scale) for n, _ in sd.layers}


def _ref_rece(sd, concepts, guide, rounds, reg, lam_r=0.1, p_r=0.1):
    w = _ref_uce_2023(sd, concepts, guide, [])
    w0 = {n: sd.base[n].double() for n, _ in sd.layers}
    retain = [_embed(sd, "")[0] for _ in concepts]
    for _ in range(rounds):
        a = sum(w[n].T @ w[n] for n in w) + reg * torch.eye(768, dtype=torch.float64)
        b = sum(w[n].T @ w0[n] for n in w)
        x = torch.linalg.inv(a) @ b
        pairs = [((x @ _embed(sd, c)[0].T).T, _embed(sd, guide)[0]) for c in concepts]
        w = {n: _solve_layer(w[n], lam_r, pairs, retain, 1.0, p_r) for n in w}
    return w


def _ref_kmeans(x, k, gen):
    centres = x[torch.randperm(x.shape[0], generator=gen)[:k]].clone()
    while True:
        d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        assign = d.argmin(1)
        prev = centres.clone()
        for i in range(k):
            sel = x[assign == i]
            centres[i] = (sel if sel.shape[0] else x[torch.randint(x.shape[0], (1,), generator=gen)]).mean(0)
        if float(torch.sqrt(((centres - prev) ** 2).sum(1)).sum()) ** 2 < 1e-4:
            return centres


def _ref_speed(sd, concepts, anchor, retain_texts, params="V", aug_num=10, threshold=0.1, retain_scale=1.0, lamb=0.0,
               disable_filter=False, seed=0):
    """train_erase_null.py's edit_model, float64, drawing from one generator in erasekit's documented order."""
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(768, dtype=torch.float64)
    null = _embed(sd, "")[0]
    k2 = torch.cat([null[[0]], _ref_kmeans(null[1:], 3, gen)]).T
    tt, at = [], []
    for c in concepts:
        t, i = _embed(sd, c)
        a, j = _embed(sd, anchor)
        t, a = (t[1:], a[1:]) if concepts == ["nudity"] else (t[[i]], a[[j]])
        tt.append(t.T @ t)
        at.append(a.T @ t)
    stt, sat = torch.stack(tt).mean(0), torch.stack(at).mean(0)
    kept = [r for r in retain_texts if not any(re.search(r"\b" + re.escape(c.lower()) + r"\b", r.lower()) for c in concepts)]
    rows = torch.cat([_embed(sd, r)[0][[_embed(sd, r)[1]]] for r in kept])
    rows = rows[torch.randperm(rows.shape[0], generator=gen)]
    want = {"V": ("to_v",), "K": ("to_k",), "KV": ("to_k", "to_v")}[params]
    out = {}
    for n, _ in sd.layers:
        if n.rsplit(".", 1)[-1] not in want:
            continue
        w = sd.base[n].double()
        e = w @ (sat - stt) @ torch.linalg.inv(eye + stt)
        _, _, v = torch.svd(w)
        p0 = v[:, -1:] @ v[:, -1:].T
        layer_rows = rows
        if aug_num > 0 and not disable_filter:
            nrm = (rows @ e.T).norm(dim=1)
            layer_rows = rows[nrm > nrm.mean()]
        total, count = torch.zeros(768, 768, dtype=torch.float64), 0
        for j in range(0, len(layer_rows), 128):
            chunk = layer_rows[j : j + 128]
            if aug_num > 0:
                outs, norms = [], []
                for i in range(0, chunk.shape[0], 8):
                    mini = chunk[i : i + 8]
                    for _ in range(aug_num):
                        pert = mini + torch.randn(mini.shape, generator=gen, dtype=torch.float64) @ p0
                        outs.append(pert)
                        norms.append((pert @ e.T).norm(dim=1))
                outs, norms = torch.cat(outs), torch.cat(norms)
                chunk = torch.cat([chunk, outs[norms > norms.mean()]])
            count += chunk.shape[0]
            total = total + chunk.T @ chunk
        u, s, _ = torch.svd(total / count)
        p = u[:, s < threshold] @ u[:, s < threshold].T
        m = torch.linalg.inv(stt @ p + retain_scale * eye)
        inner = torch.linalg.inv(k2.T @ p @ m @ k2 + lamb * torch.eye(4, dtype=torch.float64))
        out[n] = w + w @ (sat - stt) @ p @ (eye - m @ k2 @ inner @ k2.T @ p) @ m
    return out


def _run(sd, technique, config) -> dict[str, torch.Tensor]:
    _reset(sd)
    technique(config).apply(sd.pipe)
    return _edited(sd)


CPU = {"model_id": "unused-local", "device": "cpu", "use_fp16": False}


@pytest.mark.parametrize("concepts", [TEN[:1], TEN], ids=["1-concept", "10-concepts"])
def test_uce_equals_official_current_script(sd, concepts):
    preserve = RETAIN[:5]
    ours = _run(sd, UCE, UCEConfig(erase_concept=concepts, preserve_concepts=preserve, expand_prompts=len(concepts) == 1, **CPU))
    ref = _ref_uce_2025(sd, concepts, "", preserve, expand=len(concepts) == 1)
    assert len(ref) == 32 and _moved(ours, sd, ref) > 1e-3  # every K/V moved, measurably
    assert _rel(ours, ref) <= TOL, _rel(ours, ref)


@pytest.mark.parametrize("concepts", [TEN[:1], TEN], ids=["1-concept", "10-concepts"])
def test_uce_2023_token_rule_equals_the_paper_era_script(sd, concepts):
    ours = _run(sd, UCE, UCEConfig(erase_concept=concepts, guide_concept="art", preserve_concepts=RETAIN[:3], token_rule="last_token_to_end", **CPU))
    ref = _ref_uce_2023(sd, concepts, "art", RETAIN[:3])
    assert _moved(ours, sd, ref) > 1e-3
    assert _rel(ours, ref) <= TOL, _rel(ours, ref)


@pytest.mark.parametrize("concepts", [["nudity"], TEN], ids=["1-concept", "10-concepts"])
def test_rece_equals_official_rounds(sd, concepts):
    rounds = 3 if len(concepts) == 1 else 1
    ours = _run(sd, RECE, RECEConfig(erase_concept=concepts, rounds=rounds, **CPU))
    ref = _ref_rece(sd, concepts, "", rounds, reg=0.1)
    uce_only = _ref_uce_2023(sd, concepts, "", [])
    assert _rel(ref, uce_only) > 1e-3  # the rounds change the weights beyond the UCE stage
    assert _rel(ours, ref) <= TOL, _rel(ours, ref)


@pytest.mark.parametrize("concepts", [["nudity"], TEN[:1], TEN], ids=["nudity", "1-concept", "10-concepts"])
def test_speed_equals_official_null_space_edit(sd, concepts, tmp_path: Path):
    retain_file = tmp_path / "retain.csv"
    retain_file.write_text("concept\n" + "\n".join(RETAIN + ["a dog in the park"]) + "\n")  # the dog line is filtered when dog is erased
    cfg = {"erase_concept": concepts, "prior_captions": str(retain_file), "seed": 3}
    if concepts == ["nudity"]:
        cfg.update(retain_scale=0.7, lamb=0.5)
    ours = _run(sd, SPEED, SPEEDConfig(**cfg, **CPU))
    ref = _ref_speed(sd, concepts, "", RETAIN + ["a dog in the park"], retain_scale=cfg.get("retain_scale", 1.0), lamb=cfg.get("lamb", 0.0), seed=3)
    assert len(ref) == 16 and all(".to_v" in n for n in ref)  # official default: values only
    untouched = [n for n, _ in sd.layers if n not in ref]
    assert all(torch.equal(ours[n], sd.base[n].double()) for n in untouched)  # to_k never moves
    assert _moved(ours, sd, ref) > 1e-6
    assert _rel(ours, ref) <= TOL, _rel(ours, ref)


# ------------------------------------------------------------------ MACE, official CFR stage

def _official_match(a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
    """find_matching_indices as the official MACE code computes it: common prefix (with BOS) and
    common suffix (with EOS) of the unpadded ids, then padding paired with a shift of |La − Lb|."""
    s = 0
    while s < min(len(a), len(b)) and a[s] == b[s]:
        s += 1
    ea, eb = len(a) - 1, len(b) - 1
    while ea >= s and eb >= s and a[ea] == b[eb]:
        ea, eb = ea - 1, eb - 1
    old = list(range(s)) + list(range(ea + 1, len(a)))
    new = list(range(s)) + list(range(eb + 1, len(b)))
    delta = abs(len(a) - len(b))
    if old[-1] >= new[-1]:
        old += list(range(len(a), 77))
        new += list(range(len(b), 77 - delta))
    else:
        new += list(range(len(b), 77))
        old += list(range(len(a), 77 - delta))
    return old, new


@pytest.mark.parametrize("case", ["nudity", "objects_no_prior"])
def test_mace_official_cfr_matches_the_official_per_layer_solve(sd, case, tmp_path):
    from erasekit.techniques.mace import MACE
    from erasekit.techniques.mace_config import OFFICIAL_TEMPLATES, MACEConfig

    if case == "nudity":
        concepts, mapping, lam = ["nudity", "naked"], "a person wearing clothes", 0.0
        captions = ["a man riding a horse on a beach", "two dogs playing in the snow", "a plate of food with broccoli",
                    "a red bus parked on a city street"] * 3
        prior = tmp_path / "coco.csv"
        prior.write_text("caption\n" + "\n".join(f'"{c}"' for c in captions) + "\n")
        scale = 0.3  # the official 7e-7 (squared) would be invisible on 12 captions: a weight that matters here
        extra = {"prior_captions": str(prior), "train_preserve_scale": scale}
    else:
        concepts, mapping, lam, captions, scale, extra = ["ship"], "ground", 1e3, [], 0.0, {"prior_captions": None}
    _reset(sd)
    cfg = MACEConfig(erase_concept=concepts, erase_from=mapping, lambda_cfr=lam, recipe="official_cfr", device="cpu", **extra)
    MACE(cfg).apply(sd.pipe)
    ours = _edited(sd)

    pairs = []
    for c in concepts:  # as the official code: a concept's 30 prompts and their 30 mappings encoded in one batch
        olds = [t.format(c) for t in OFFICIAL_TEMPLATES["object"][:30]]
        news = [t.format(mapping) for t in OFFICIAL_TEMPLATES["object"][:30]]
        ids = sd.tok(olds + news, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            h = sd.text(ids)[0].double()
        for k, (a, b) in enumerate(zip(olds, news, strict=True)):
            ia, ib = _official_match(sd.tok(a).input_ids, sd.tok(b).input_ids)
            assert len(ia) == len(ib)
            pairs.append((h[k][ia], h[30 + k][ib]))
    keep = [_embed(sd, c)[0] for c in captions]
    ref = {}
    for n, _ in sd.layers:
        w = sd.base[n].double()
        d = w.shape[1]
        mat1, mat2 = lam * w, lam * torch.eye(d, dtype=torch.float64)
        for x, y in pairs:
            mat1 = mat1 + (w @ y.T) @ x
            mat2 = mat2 + x.T @ x
        p1 = sum(((w @ k.T) @ k for k in keep), torch.zeros_like(w))
        p2 = sum((k.T @ k for k in keep), torch.zeros(d, d, dtype=torch.float64))
        mat1, mat2 = mat1 + scale * (scale * p1), mat2 + scale * (scale * p2)  # the official code scales the cache twice
        ref[n] = mat1 @ torch.linalg.inv(mat2)
    rel = _rel(ours, ref)
    assert rel <= TOL, rel
    assert _moved(ours, sd, ref) > 1e-3  # the edit did something
    _reset(sd)
