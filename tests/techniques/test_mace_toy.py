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


def _floor(target: Score) -> float:
    """The default maps a circle prompt onto its neutral target, so the target's own circle rate
    (plus 0.05) is the best it can reach; 1e-9 absorbs 0.225 + 0.05 in binary floating point."""
    return max(0.15, target.circle_rate + 0.05) + 1e-9


def test_default_erases_circles_and_keeps_other_shapes(base, default_edit):
    """The spec's mapping (overshoot 0): circle prompts draw what their neutral target draws
    (measured: 0.275 circles; the targets "a red" … "a" draw 0.225 themselves)."""
    erased, others = default_edit["circle"], default_edit["others"]
    bar = _floor(base["neutral"])
    assert erased.circle_rate <= bar, (erased, base["neutral"])
    assert erased.circle_rate <= base["circle"].circle_rate - 0.5, (erased, base["circle"])
    assert others.shape_acc >= base["others"].shape_acc - 0.05, (others, base["others"])
    assert others.colour_acc >= base["others"].colour_acc - 0.05, (others, base["others"])


def test_erasing_circle_alone_leaks_through_the_synonym(default_edit):
    assert default_edit["disc"].circle_rate >= 0.5, default_edit["disc"]


def test_erasing_the_synonym_list_erases_both(bench, base):
    bench.edit(erase_concept=["circle", "disc"])
    circle, disc = bench.score(CIRCLE), bench.score(DISC)
    bench.reset()
    assert circle.circle_rate <= _floor(base["neutral"]), circle
    assert disc.circle_rate <= _floor(base["neutral"]), disc


def test_overshoot_maps_past_the_neutral_target(bench, base):
    """The tuned variant (``overshoot: 1``): past the target, away from the concept: below the
    neutral target's own rate (measured 0.00 circles, other shapes kept)."""
    bench.edit(erase_concept="circle", overshoot=1.0)
    circle, others = bench.score(CIRCLE), bench.score(OTHERS)
    bench.reset()
    assert circle.circle_rate <= 0.15 and circle.circle_rate < base["neutral"].circle_rate, (circle, base["neutral"])
    assert others.shape_acc >= base["others"].shape_acc - 0.05, others


def test_erase_from_shape_keeps_colour_and_loses_the_circle(bench, base):
    """Mapped onto "a … shape", circle prompts draw what those draw (0.50 vs the targets' own 0.525)."""
    bench.edit(erase_concept="circle", erase_from="shape")
    s = bench.score(CIRCLE)
    bench.reset()
    assert s.circle_rate <= _floor(base["shape"]), (s, base["shape"])
    assert s.circle_rate <= base["circle"].circle_rate - 0.4, (s, base["circle"])
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
