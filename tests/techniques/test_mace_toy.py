"""MACE on the shipped toy world, scored by the toy judge (fixed seeds, paired with the base model).

Bars from the MACE issue. Every edit starts from the same base weights (the K/V
are restored between edits), and base and edited images use the same seeds, so
differences come from the edit alone. 8 seeds per prompt.
"""

from __future__ import annotations

import pytest
import torch
from support.toy_bench import CIRCLE, DISC, NEUTRAL_TARGETS, OTHERS, SHAPE_TARGETS, TOY_READY, Score, ToyBench

pytestmark = pytest.mark.skipif(not TOY_READY, reason="toy-world weights not built yet")


@pytest.fixture(scope="module")
def bench() -> ToyBench:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return ToyBench()


@pytest.fixture(scope="module")
def base(bench: ToyBench) -> dict[str, Score]:
    """Unedited-model scores, shared by every test of this module."""
    bench.reset()
    return {name: bench.score(prompts) for name, prompts in
            {"circle": CIRCLE, "disc": DISC, "others": OTHERS, "neutral": NEUTRAL_TARGETS, "shape": SHAPE_TARGETS}.items()}


@pytest.fixture(scope="module")
def default_edit(bench: ToyBench, base) -> dict[str, Score]:
    """Erase "circle" with every other option at its default."""
    bench.edit(erase_concept="circle")
    res = {"circle": bench.score(CIRCLE), "disc": bench.score(DISC), "others": bench.score(OTHERS)}
    bench.reset()
    return res


def test_base_model_draws_what_it_is_asked(base):
    assert base["circle"].circle_rate >= 0.85, base
    assert base["others"].shape_acc >= 0.8, base


def test_default_erases_circles_and_keeps_other_shapes(base, default_edit):
    erased, others = default_edit["circle"], default_edit["others"]
    bar = max(0.15, base["neutral"].circle_rate + 0.05)  # the target prompt's own circle rate is the floor
    assert erased.circle_rate <= bar, (erased, base["neutral"])
    assert others.shape_acc >= base["others"].shape_acc - 0.05, (others, base["others"])
    assert others.colour_acc >= base["others"].colour_acc - 0.05, (others, base["others"])


def test_erasing_circle_alone_leaks_through_the_synonym(default_edit):
    assert default_edit["disc"].circle_rate >= 0.5, default_edit["disc"]


def test_erasing_the_synonym_list_erases_both(bench, base):
    bench.edit(erase_concept=["circle", "disc"])
    circle, disc = bench.score(CIRCLE), bench.score(DISC)
    bench.reset()
    assert circle.circle_rate <= 0.15, circle
    assert disc.circle_rate <= 0.15, disc


def test_erase_from_shape_keeps_colour_and_loses_the_circle(bench, base):
    bench.edit(erase_concept="circle", erase_from="shape")
    s = bench.score(CIRCLE)
    bench.reset()
    assert s.circle_rate <= 0.25, (s, base["shape"])
    assert s.colour_acc >= base["circle"].colour_acc - 0.05, (s, base["circle"])


def test_erasure_weakens_monotonically_as_lambda_grows(bench, base, default_edit):
    """The spec's λ grid, extended to where λ dominates the Grams (there the edit fades out)."""
    rates = []
    for lam in (0.01, 0.1, 1.0, 10.0, 1e3, 1e5):
        if lam == 0.1:
            rates.append(default_edit["circle"].circle_rate)  # the default λ: already measured
            continue
        bench.edit(erase_concept="circle", lambda_cfr=lam)
        rates.append(bench.score(CIRCLE).circle_rate)
    bench.reset()
    assert all(a <= b for a, b in zip(rates, rates[1:], strict=False)), rates
    assert rates[-1] > rates[0] + 0.3, rates  # λ really is the strength knob, not ignored
