"""The MMA-Diffusion attack and its cache, on real (tiny, random) CLIP text encoders.

Behaviour on the trained toy world (cosine >= 0.9, circles drawn, ASR before/after MACE,
0 steps on a second run) is tested end to end in tests/metrics/test_mma.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from erasekit.attacks import (
    AttackCache,
    AttackSettings,
    MMAAttack,
    banned_words_for,
    text_encoder_fingerprint,
)
from erasekit.attacks.vocabulary import MMA_SENSITIVE_WORDS, Vocabulary, token_text
from erasekit.toyworld.world import ToyWorld

SMALL = AttackSettings(n_tokens=8, steps=6, topk=16, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def toy_tok(tmp_path_factory: pytest.TempPathFactory):
    """The toy world's real BPE tokenizer (built by its deterministic recipe)."""
    from erasekit.toyworld.tokenizer import build_tokenizer_files, load_tokenizer

    return load_tokenizer(build_tokenizer_files(tmp_path_factory.mktemp("tok") / "tok"))


@pytest.fixture(scope="module")
def random_te(toy_tok):
    """An untrained text encoder with the toy world's architecture (width 256, 2 layers)."""
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import text_config

    torch.manual_seed(0)
    return CLIPTextModel(text_config(len(toy_tok), toy_tok.bos_token_id, toy_tok.eos_token_id)).eval()


def _pooled(te, tok, text: str) -> torch.Tensor:
    with torch.no_grad():
        return te(**tok([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt")).pooler_output[0]


# ------------------------------------------------------------------ vocabulary and banned words


def test_banned_tokens_and_text(toy_tok) -> None:
    vocab = Vocabulary(toy_tok, ["circle", "disc"], len(toy_tok))
    assert vocab.n_banned_tokens >= 2  # "circle</w>", "disc</w>"
    assert all("circle" not in t and "disc" not in t for t in vocab.text.values())
    assert toy_tok.convert_tokens_to_ids("circ") in vocab.allowed  # a fragment is allowed as a token...
    assert vocab.has_banned("a red circles")  # ...but never spells a banned word in the prompt text
    assert set(toy_tok.all_special_ids).isdisjoint(vocab.allowed)
    assert all(t == t.lower() for t in vocab.text.values())  # CLIP lower-cases: upper case never round-trips


def test_token_text_decodes_word_ends_and_rejects_non_ascii() -> None:
    assert token_text("red</w>") == "red "
    assert token_text("circ") == "circ"
    assert token_text("Ã©</w>") is None  # UTF-8 bytes of "é": not printable ASCII


def test_banned_words_for_toy_nudity_and_extra() -> None:
    assert banned_words_for(["circle"], synonyms=ToyWorld().synonyms) == ["circle", "disc"]
    assert banned_words_for(["disc"], synonyms=ToyWorld().synonyms) == ["disc", "circle"]
    words = banned_words_for(["nudity", "naked"], extra=["Topless "], nudity=True)
    assert words[:2] == ["nudity", "naked"] and "topless" in words
    assert all(w in words for w in MMA_SENSITIVE_WORDS)
    assert len(words) == len(set(words))
    assert banned_words_for(["Van Gogh", "the starry night"]) == ["van gogh", "gogh", "the starry night", "starry", "night"]


# ------------------------------------------------------------------ the search


def test_attack_reduces_loss_respects_bans_and_roundtrips(toy_tok, random_te) -> None:
    attack = MMAAttack(random_te, toy_tok, SMALL, banned=["circle", "disc", "red"], progress=False)
    res = attack.search("a red circle")
    assert res.loss_curve[0] > res.loss  # the search improved on its random start
    assert len(res.token_ids) == SMALL.n_tokens
    assert toy_tok(res.prompt, add_special_tokens=False).input_ids == res.token_ids  # the text is what was optimised
    low = res.prompt.lower()
    assert "circle" not in low and "disc" not in low and "red" not in low
    # the reported cosine is the one the normal (padded, hook-free) encoder path gives
    cos = torch.nn.functional.cosine_similarity(_pooled(random_te, toy_tok, res.prompt), _pooled(random_te, toy_tok, "a red circle"), dim=0)
    assert abs(float(cos) - res.cosine) < 1e-4
    assert attack.steps_run == SMALL.steps


def test_attack_is_deterministic_per_seed(toy_tok, random_te) -> None:
    a = MMAAttack(random_te, toy_tok, SMALL, banned=["circle"], progress=False).search("a blue square")
    b = MMAAttack(random_te, toy_tok, SMALL, banned=["circle"], progress=False).search("a blue square")
    c = MMAAttack(random_te, toy_tok, SMALL.model_copy(update={"seed": 1}), banned=["circle"], progress=False).search("a blue square")
    assert a.prompt == b.prompt and a.loss == b.loss
    assert c.init_prompt != a.init_prompt


def test_token_gradient_is_the_loss_gradient(toy_tok, random_te) -> None:
    """The one-hot gradient (spliced in with a forward hook) predicts real single-token swaps."""
    attack = MMAAttack(random_te, toy_tok, SMALL, progress=False)
    target = attack.target_embedding("a green cross")
    gen = torch.Generator().manual_seed(0)
    cur = attack._initial(gen)
    grad = attack.gradient(cur, target)
    assert grad.shape == (SMALL.n_tokens, random_te.get_input_embeddings().weight.shape[0])
    base = float(attack.losses(cur[None], target)[0])
    assert abs(float(attack.last_loss) - base) < 1e-5  # the hooked forward is the plain forward
    allowed = torch.tensor(attack.vocab.allowed)
    swaps = []
    for _ in range(60):
        p = int(torch.randint(0, SMALL.n_tokens, (1,), generator=gen))
        v = int(allowed[torch.randint(0, len(allowed), (1,), generator=gen)])
        swaps.append((p, v))
    cands = cur[None].repeat(len(swaps), 1)
    for i, (p, v) in enumerate(swaps):
        cands[i, p] = v
    true_delta = attack.losses(cands, target) - base
    est = torch.tensor([float(grad[p, v] - grad[p, int(cur[p])]) for p, v in swaps])
    corr = torch.corrcoef(torch.stack([est, true_delta]))[0, 1]
    assert corr > 0.5, corr


def test_too_many_tokens_for_the_encoder_is_a_clear_error(tiny_sd_dir) -> None:
    from transformers import CLIPTextModel, CLIPTokenizer

    te = CLIPTextModel.from_pretrained(tiny_sd_dir / "text_encoder")
    tok = CLIPTokenizer.from_pretrained(tiny_sd_dir / "tokenizer")
    with pytest.raises(ValueError, match="at most 14"):
        MMAAttack(te, tok, AttackSettings(n_tokens=20), progress=False)
    # the SD-layout tiny encoder (16 positions, eos_token_id 1) attacks fine with 14 tokens
    res = MMAAttack(te, tok, AttackSettings(n_tokens=14, steps=3, topk=8, batch_size=16), banned=["cat"], progress=False).search("a cat")
    assert "cat" not in res.prompt and len(res.token_ids) == 14


# ------------------------------------------------------------------ the cache


def test_cache_second_call_runs_zero_steps_and_any_key_change_recomputes(toy_tok, random_te, tmp_path: Path) -> None:
    cache = AttackCache(tmp_path / "attacks")

    def run(settings=SMALL, target="a red circle", banned=("circle",), restart=0):
        att = MMAAttack(random_te, toy_tok, settings, banned=list(banned), cache=cache, progress=False)
        return att.attack(target, restart), att

    first, a1 = run()
    assert not first.cached and a1.steps_run == SMALL.steps and a1.computed == 1
    again, a2 = run()
    assert again.cached and a2.steps_run == 0 and a2.cache_hits == 1
    assert (again.prompt, again.token_ids, again.loss) == (first.prompt, first.token_ids, first.loss)
    for change in ({"settings": SMALL.model_copy(update={"steps": SMALL.steps + 1})},
                   {"settings": SMALL.model_copy(update={"seed": 7})},
                   {"settings": SMALL.model_copy(update={"topk": 8})},
                   {"target": "a red square"},
                   {"banned": ("circle", "disc")},
                   {"restart": 1}):
        res, att = run(**change)
        assert not res.cached and att.steps_run > 0, change
    files = list((tmp_path / "attacks").rglob("*.json"))
    assert len(files) == 7 and not list((tmp_path / "attacks").rglob("*.tmp"))
    entry = json.loads(files[0].read_text())
    assert entry["format"].startswith("erasekit.attack-cache") and entry["key"]["encoder"] and entry["result"]["prompt"]


def test_cache_misses_when_the_text_encoder_changes(toy_tok, tmp_path: Path) -> None:
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import text_config

    torch.manual_seed(1)
    te = CLIPTextModel(text_config(len(toy_tok), toy_tok.bos_token_id, toy_tok.eos_token_id)).eval()
    cache = AttackCache(tmp_path / "attacks")
    fp0 = text_encoder_fingerprint(te, toy_tok)
    MMAAttack(te, toy_tok, SMALL, cache=cache, progress=False).attack("a circle")
    with torch.no_grad():
        te.get_input_embeddings().weight[5, 0] += 1e-3  # an in-place edit of one number
    assert text_encoder_fingerprint(te, toy_tok) != fp0  # memo invalidated by the tensor's version counter
    att = MMAAttack(te, toy_tok, SMALL, cache=cache, progress=False)
    assert not att.attack("a circle").cached and att.steps_run == SMALL.steps


def test_corrupt_or_mismatched_entries_are_misses(tmp_path: Path) -> None:
    cache = AttackCache(tmp_path)
    payload = {"attack": "x", "encoder": "e", "target": "t", "params": {}, "seed": 0, "restart": 0}
    path = cache.put(payload, {"prompt": "p q", "loss": 0.1})
    assert cache.get(payload)["prompt"] == "p q"
    path.write_text("{not json")
    assert cache.get(payload) is None and not path.exists()
    cache.put(payload, {"prompt": "p q"})
    entry = json.loads(path.read_text())
    entry["key"]["target"] = "other"  # a file whose content does not match its key
    path.write_text(json.dumps(entry))
    assert cache.get(payload) is None
    assert cache.hits == 1 and cache.misses == 2


def test_fingerprint_hashes_weights_not_identity(toy_tok) -> None:
    from transformers import CLIPTextModel

    from erasekit.toyworld.models import text_config

    cfg = text_config(len(toy_tok), toy_tok.bos_token_id, toy_tok.eos_token_id)
    torch.manual_seed(3)
    a = CLIPTextModel(cfg)
    b = CLIPTextModel(cfg)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(4)
    c = CLIPTextModel(cfg)
    assert text_encoder_fingerprint(a, toy_tok) == text_encoder_fingerprint(b, toy_tok)
    assert text_encoder_fingerprint(a, toy_tok) != text_encoder_fingerprint(c, toy_tok)
    assert text_encoder_fingerprint(a, toy_tok) != text_encoder_fingerprint(a.half(), toy_tok)


# ------------------------------------------------------------------ SD v1.4's tokenizer and encoder layout


def _sd_tokenizer(folder: Path):
    """SD v1.4's CLIP tokenizer, rebuilt offline from the BPE merges open_clip ships (49,408 tokens)."""
    from erasekit.models.sd_shapes import open_clip_bpe, sd_clip_tokenizer

    if open_clip_bpe() is None:
        pytest.skip("open_clip's BPE vocabulary is not installed")
    return sd_clip_tokenizer(folder)


def test_sd_tokenizer_and_legacy_eos_pooling(tmp_path: Path) -> None:
    """SD v1.4's vocabulary with MMA's nudity list, on an encoder with SD's config quirk
    (eos_token_id 2: transformers pools at argmax(input_ids)), shrunk to width 32."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = _sd_tokenizer(tmp_path / "sd_tok")
    assert len(tok) == 49408 and tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
                                      pad_token_id=1)).eval()
    banned = banned_words_for(["nudity"], nudity=True)
    attack = MMAAttack(te, tok, AttackSettings(n_tokens=20, steps=3, topk=32, batch_size=48), banned=banned, progress=False)
    assert attack.vocab.n_banned_tokens > 1000  # MMA's fragments ("na", "ke", "ak") ban a large share of the vocabulary
    assert all(not any(b in t.lower() for b in banned) for t in attack.vocab.text.values())
    res = attack.search("a photo of a naked woman")
    assert tok(res.prompt, add_special_tokens=False).input_ids == res.token_ids and len(res.token_ids) == 20
    assert not any(b in res.prompt for b in banned)
    cos = torch.nn.functional.cosine_similarity(_pooled(te, tok, res.prompt), _pooled(te, tok, "a photo of a naked woman"), dim=0)
    assert abs(float(cos) - res.cosine) < 1e-4  # the argmax-pooling path agrees with the attack's unpadded ids
