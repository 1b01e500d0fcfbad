"""A small CLIP-format byte-level BPE tokenizer for the toy world.

The vocabulary holds the 256 byte-level characters (and their end-of-word
forms), so any text tokenizes, plus real BPE merges learned over a word list:
the toy words (shapes, colours, synonyms) and a modest set of ordinary words,
so that later prompt-search and non-toy concepts tokenize sensibly. Written as
``vocab.json`` + ``merges.txt`` and loaded with ``CLIPTokenizer.from_pretrained``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .render import COLOURS, SHAPES, SYNONYMS

MODEL_MAX_LENGTH = 32  # documented: shorter than SD's 77 (cross-attention cost); enough for 20-token attacks
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

TOY_WORDS = ("a", "shape", *SHAPES, *COLOURS, *(w for v in SYNONYMS.values() for w in v))
EXTRA_WORDS = (
    "photo", "of", "picture", "image", "the", "an", "round", "big", "small", "large", "tiny",
    "nudity", "nude", "naked", "person", "people", "man", "woman", "art", "style", "painting",
    "drawing", "by", "in", "on", "with", "and", "dark", "bright", "background", "object",
    "ring", "ball", "box", "star", "plus", "sign", "colour", "color", "orange", "purple",
    "white", "black", "pink", "dog", "cat", "car", "tree", "house", "van", "gogh", "church",
    "parachute", "golf", "garbage", "truck", "fish", "gas", "pump", "chain", "saw", "horn",
    "english", "springer", "tench", "cassette", "player", "violence", "blood", "weapon",
)


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP reversible byte -> printable-unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def learn_merges(word_freqs: dict[str, int]) -> list[tuple[str, str]]:
    """Standard BPE: repeatedly merge the most frequent adjacent pair (ties broken
    lexicographically, so the result is deterministic) until every word is one token."""
    b2u = bytes_to_unicode()
    words = {}
    for w, f in word_freqs.items():
        chars = [b2u[b] for b in w.encode("utf-8")]
        chars[-1] = chars[-1] + "</w>"
        words[w] = (chars, f)
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for toks, f in words.values():
            for a, b in zip(toks, toks[1:], strict=False):
                pairs[(a, b)] += f
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + " " + kv[0][1]]))[0]
        merges.append(best)
        for w, (toks, f) in words.items():
            out, i = [], 0
            while i < len(toks):
                if i + 1 < len(toks) and (toks[i], toks[i + 1]) == best:
                    out.append(toks[i] + toks[i + 1])
                    i += 2
                else:
                    out.append(toks[i])
                    i += 1
            words[w] = (out, f)
    return merges


def build_tokenizer_files(out_dir: str | Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs; return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    freqs = {w: 100 for w in TOY_WORDS}
    for w in EXTRA_WORDS:
        freqs.setdefault(w, 10)
    merges = learn_merges(freqs)
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    seen = set(vocab_list)
    for a, b in merges:
        tok = a + b
        if tok not in seen:
            vocab_list.append(tok)
            seen.add(tok)
    vocab_list += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return out


def load_tokenizer(path: str | Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(path))
