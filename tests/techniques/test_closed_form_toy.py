"""UCE, RECE and SPEED on the shipped toy world, judge-scored (8 seeds per prompt, paired with the base model).

The official defaults edit the *last word token* only. The toy world's causal
text encoder copies the concept into every later position (end-of-text, padding)
and its UNet reads them all, so the official defaults leave most circles
(measured: UCE 0.82, SPEED 0.97 circle rate on circle prompts). The recipes below
use only official mechanisms — the 2023 UCE token rule (last token to the end),
preserved texts, SPEED's all-token rows (its nudity rule), its published nudity
scales — plus one erasekit extension, UCE ``templates`` (the concept in the
contexts the prompts use). Their rows are in the README's technique table.

Bars: circle rate ≤ max(0.15, the guide prompts' own circle rate + 0.05); the
other shapes within 5 points of the base model. SPEED misses the circle bar on
this world (≈ 0.40 at its best setting); its test states that figure.
"""

from __future__ import annotations

import pytest
from support.toy_bench import CIRCLE, DISC, OTHERS, TOY_READY, ToyBench

from erasekit.world import world_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not TOY_READY, reason="toy-world weights not built yet")]

COLOUR_TEMPLATES = ["a {}", "a red {}", "a green {}", "a blue {}", "a yellow {}"]


def _keep() -> list[str]:
    """The toy world's captions that name no circle: the texts to preserve."""
    return [c for c in world_for("toy").prior_captions() if c and "circle" not in c and "disc" not in c]


RECIPES = {
    "uce": {"templates": COLOUR_TEMPLATES, "token_rule": "last_token_to_end", "preserve_scale": 1.0},
    "rece": {"templates": COLOUR_TEMPLATES, "preserve_scale": 0.3, "rounds": 1, "regular_scale": 1e-3},
    "speed": {"token_rule": "all_tokens", "prior_captions": None, "lamb": 0.5, "retain_scale": 0.7, "params": "KV"},
}


@pytest.fixture(scope="module")
def bench() -> ToyBench:
    return ToyBench()


@pytest.fixture(scope="module")
def base(bench: ToyBench):
    return bench.base_scores()


def _recipe(name: str, concept) -> dict:
    cfg = {"erase_concept": concept, **RECIPES[name]}
    if name in ("uce", "rece"):
        cfg["preserve_concepts"] = _keep()
    return cfg


def _scores(bench: ToyBench, name: str, concept) -> dict:
    bench.edit(name, **_recipe(name, concept))
    out = {"circle": bench.score(CIRCLE), "disc": bench.score(DISC), "others": bench.score(OTHERS)}
    bench.reset()
    return out


def test_official_defaults_leave_the_circle_on_this_world(bench, base):
    bench.edit("uce", erase_concept="circle")
    assert bench.score(CIRCLE).circle_rate >= 0.6  # last-token-only: the later positions still say "circle"
    bench.reset()


@pytest.mark.parametrize("name", ["uce", "rece"])
def test_recipe_erases_circle_and_keeps_the_other_shapes(bench, base, name):
    assert base["circle"].circle_rate == 1.0 and base["others"].shape_acc == 1.0
    bar = max(0.15, base["guide"].circle_rate + 0.05)  # the guides are the circle prompts without "circle"
    s = _scores(bench, name, "circle")
    assert s["circle"].circle_rate <= bar, (s, bar)
    assert s["others"].shape_acc >= base["others"].shape_acc - 0.05 and s["others"].colour_acc >= base["others"].colour_acc - 0.05, s


def test_speed_lowers_circle_and_keeps_the_other_shapes(bench, base):
    s = _scores(bench, "speed", "circle")
    assert s["circle"].circle_rate <= 0.5, s  # measured 0.40: below the base's 1.00, above the 0.275 bar (see README)
    assert s["others"].shape_acc >= base["others"].shape_acc - 0.05 and s["others"].colour_acc >= base["others"].colour_acc - 0.05, s


@pytest.mark.parametrize("name", ["uce", "speed"])
def test_erasing_circle_and_disc_lowers_both(bench, base, name):
    s = _scores(bench, name, ["circle", "disc"])
    assert s["circle"].circle_rate <= 0.4 and s["disc"].circle_rate <= 0.4, s  # measured 0.33 / 0.30 (uce), 0.33 / 0.33 (speed)
    assert s["others"].shape_acc >= base["others"].shape_acc - 0.05, s
