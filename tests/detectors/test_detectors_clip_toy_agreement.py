"""The mini-CLIP detector agrees with the toy judge on toy images (issue bar: >= 90% on base images).

Generated set: 4 seeds x the 16 "a {colour} {shape}" prompts from the shipped toy
pipeline at its default sampler settings; concept "circle". Skipped until the toy
weights are committed.

Measured with the final shipped weights (0e5cae6), 1 torch thread: renders 1.000;
generated, seeds 0-3: 0.953 (0.958 over 12 seeds / 192 images; shape-only
captions instead of the caption ensemble: 0.938). The remaining misses are
generated squares/crosses the judge calls with certainty but the mini-CLIP calls
circles: its vision tower saw only crisp renders, while the judge was trained
with blur + noise (a 300-step fine-tune with that augmentation, prototyped
outside the repo, reached 0.98-1.00).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from erasekit.detectors import ClipDetector, ToyJudgeDetector


def _weights_present() -> bool:
    from erasekit.toyworld import CLIP_DIR, JUDGE_DIR, PIPELINE_DIR

    return (
        (Path(CLIP_DIR) / "config.json").is_file()
        and (Path(JUDGE_DIR) / "model.safetensors").is_file()
        and (Path(PIPELINE_DIR) / "model_index.json").is_file()
    )


pytestmark = pytest.mark.skipif(not _weights_present(), reason="toy weights not committed yet")


@pytest.fixture(scope="module")
def detectors() -> tuple[ToyJudgeDetector, ClipDetector]:
    return ToyJudgeDetector(), ClipDetector("toy")


@pytest.fixture(scope="module")
def generated_agreement(detectors) -> float:
    from erasekit.toyworld import COLOURS, SHAPES, TOY_DEFAULTS, load_pipeline

    judge, clip = detectors
    pipe = load_pipeline()
    prompts = [f"a {c} {s}" for s in SHAPES for c in COLOURS]
    images = []
    for seed in range(4):
        gens = [torch.Generator().manual_seed(1000 * seed + i) for i in range(len(prompts))]
        images += pipe(prompts, generator=gens, output_type="pil", **TOY_DEFAULTS).images
    j = judge.detect(images, "circle")
    c = clip.detect(images, "circle")
    agree = sum(a.flagged == b.flagged for a, b in zip(j, c, strict=True)) / len(images)
    print(f"clip/judge agreement on 'circle': {agree:.3f} over {len(images)} generated images; "
          f"judge circles {sum(a.flagged for a in j)}, clip circles {sum(b.flagged for b in c)}")
    return agree


def test_agreement_on_renders(detectors) -> None:
    from erasekit.toyworld import render_batch

    judge, clip = detectors
    imgs, shapes, _, _ = render_batch(128, seed=11)
    pil = [Image.fromarray(a) for a in imgs]
    j = np.array([d.flagged for d in judge.detect(pil, "circle")])
    c = np.array([d.flagged for d in clip.detect(pil, "circle")])
    assert (j == np.array([s == "circle" for s in shapes])).mean() >= 0.95
    assert (j == c).mean() >= 0.95


def test_agreement_on_generated_images_meets_the_bar(generated_agreement: float) -> None:
    assert generated_agreement >= 0.9
