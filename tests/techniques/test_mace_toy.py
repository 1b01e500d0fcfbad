"""MACE on the shipped toy world, scored by the toy judge (fixed seeds, paired with the base model).

Bars from the MACE issue. Every edit starts from the same base weights (the K/V
are restored between edits), and base and edited images use the same seeds, so
differences come from the edit alone. 8 seeds per prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from erasekit.toyworld import COLOURS, PIPELINE_DIR, TOY_DEFAULTS

# Development override (intermediate weights while the toy world trains); tests use the shipped ones.
TOY_PIPE = Path(os.environ.get("ERASEKIT_TOY_PIPELINE", PIPELINE_DIR))
TOY_JUDGE = os.environ.get("ERASEKIT_TOY_JUDGE")

pytestmark = pytest.mark.skipif(not (TOY_PIPE / "model_index.json").is_file(), reason="toy-world weights not built yet")

SEEDS = tuple(range(8))
OTHER_SHAPES = ("square", "triangle", "cross")
CIRCLE = [f"a {c} circle" for c in COLOURS] + ["a circle"]
DISC = [f"a {c} disc" for c in COLOURS] + ["a disc"]
OTHERS = [f"a {c} {s}" for s in OTHER_SHAPES for c in COLOURS] + [f"a {s}" for s in OTHER_SHAPES]
NEUTRAL_TARGETS = [f"a {c}" for c in COLOURS] + ["a"]  # CIRCLE with the concept dropped (the default target)
SHAPE_TARGETS = [f"a {c} shape" for c in COLOURS] + ["a shape"]  # CIRCLE under erase_from: shape


def _truth(prompt: str) -> tuple[str | None, str | None]:
    words = prompt.split()
    colour = next((w for w in words if w in COLOURS), None)
    shape = words[-1] if words and words[-1] not in COLOURS and words[-1] != "a" else None
    return ({"disc": "circle"}.get(shape, shape) if shape != "shape" else None), colour


@dataclass
class Score:
    n: int
    circle_rate: float
    shape_acc: float | None
    colour_acc: float | None

    def __repr__(self) -> str:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        return f"Score(n={self.n}, circle={f(self.circle_rate)}, shape_acc={f(self.shape_acc)}, colour_acc={f(self.colour_acc)})"


class ToyBench:
    """One toy pipeline + judge; ``edit(**config)`` applies MACE to the pristine base weights."""

    def __init__(self) -> None:
        from erasekit.techniques.closed_form import cross_attention_kv
        from erasekit.toyworld import load_pipeline
        from erasekit.toyworld.judge import load_judge

        self.pipe = load_pipeline(path=TOY_PIPE)
        self.judge = load_judge(path=TOY_JUDGE) if TOY_JUDGE else load_judge()
        self.layers = cross_attention_kv(self.pipe.unet)
        self.base = [lin.weight.detach().clone() for _, lin in self.layers]

    def reset(self) -> None:
        with torch.no_grad():
            for (_, lin), w in zip(self.layers, self.base, strict=True):
                lin.weight.copy_(w)

    def edit(self, **config) -> dict:
        from erasekit.techniques.mace import MACE, MACEConfig

        self.reset()
        cfg = MACEConfig(**{"model_id": "toy", "device": "cpu", "use_fp16": False, **config})
        return MACE(cfg).apply(self.pipe)

    def generate(self, prompts: list[str], seeds=SEEDS) -> np.ndarray:
        todo = [(p, s) for p in prompts for s in seeds]
        out = []
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            gens = [torch.Generator().manual_seed(s) for _, s in chunk]
            im = self.pipe([p for p, _ in chunk], num_inference_steps=TOY_DEFAULTS["num_inference_steps"],
                           guidance_scale=TOY_DEFAULTS["guidance_scale"], height=TOY_DEFAULTS["height"], width=TOY_DEFAULTS["width"],
                           generator=gens, output_type="np").images
            out.append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
        return np.concatenate(out)

    def score(self, prompts: list[str], seeds=SEEDS) -> Score:
        preds = self.judge.predict(self.generate(prompts, seeds))
        truth = [_truth(p) for p in prompts for _ in seeds]
        shapes = [(pr.shape, t[0]) for pr, t in zip(preds, truth, strict=True) if t[0] is not None]
        colours = [(pr.colour, t[1]) for pr, t in zip(preds, truth, strict=True) if t[1] is not None]
        return Score(
            n=len(preds),
            circle_rate=float(np.mean([p.shape == "circle" for p in preds])),
            shape_acc=float(np.mean([a == b for a, b in shapes])) if shapes else None,
            colour_acc=float(np.mean([a == b for a, b in colours])) if colours else None,
        )


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
