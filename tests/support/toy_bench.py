"""The toy world as a test bench for techniques: one pipeline + judge, edits from pristine weights, judge scores.

Shared by the technique tests on the toy world (MACE and the closed-form family).
Base and edited images use the same seeds (8 per prompt), so differences come
from the edit alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from erasekit.generation.sampling import install, sample
from erasekit.toyworld import COLOURS, PIPELINE_DIR, TOY_DEFAULTS

# Development override (intermediate weights while the toy world trains); tests use the shipped ones.
TOY_PIPE = Path(os.environ.get("ERASEKIT_TOY_PIPELINE", PIPELINE_DIR))
TOY_JUDGE = os.environ.get("ERASEKIT_TOY_JUDGE")

TOY_READY = (TOY_PIPE / "model_index.json").is_file()

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
    """One toy pipeline + judge; ``edit(technique, **config)`` applies a technique to the pristine base weights."""

    def __init__(self) -> None:
        from erasekit.toyworld import load_pipeline
        from erasekit.toyworld.judge import load_judge

        self.pipe = load_pipeline(path=TOY_PIPE)
        self.judge = load_judge(path=TOY_JUDGE) if TOY_JUDGE else load_judge()
        self.base = {k: v.detach().clone() for k, v in self.pipe.unet.state_dict().items()}  # ESD moves more than K/V

    def reset(self) -> None:
        install(self.pipe, None)  # an inference-time technique's hook goes with the edit
        self.pipe.unet.load_state_dict(self.base)

    def edit(self, technique: str = "mace", **config) -> dict:
        """Apply ``technique`` (a registered name) with ``config`` to the pristine base weights."""
        from erasekit.registry import TECHNIQUES, load_builtins

        load_builtins()
        self.reset()
        cls = TECHNIQUES.get(technique)
        return cls(cls.Config(**{"model_id": "toy", "device": "cpu", "use_fp16": False, **config})).apply(self.pipe)

    def generate(self, prompts: list[str], seeds=SEEDS) -> np.ndarray:
        todo = [(p, s) for p in prompts for s in seeds]
        out = []
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            gens = [torch.Generator().manual_seed(s) for _, s in chunk]
            with torch.no_grad():  # through a technique's sampling hook when one is installed (SLD, negative prompt)
                im = np.stack(sample(self.pipe, [p for p, _ in chunk], [""] * len(chunk),
                                     steps=TOY_DEFAULTS["num_inference_steps"], guidance=TOY_DEFAULTS["guidance_scale"],
                                     height=TOY_DEFAULTS["height"], width=TOY_DEFAULTS["width"], generators=gens,
                                     output_type="np"))
            out.append((np.clip(im, 0, 1) * 255).round().astype(np.uint8))
        return np.concatenate(out)

    def base_scores(self) -> dict[str, Score]:
        """The unedited model on the circle prompts, the other shapes and the guides (the bars' reference)."""
        self.reset()
        return {"circle": self.score(CIRCLE), "others": self.score(OTHERS), "guide": self.score(NEUTRAL_TARGETS)}

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


