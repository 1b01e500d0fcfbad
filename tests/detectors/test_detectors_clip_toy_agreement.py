"""The mini-CLIP detector agrees with the toy judge on base toy images (issue: >= 90%).

64 images: 4 seeds x the 16 "a {colour} {shape}" prompts from the shipped toy
pipeline at its default sampler settings; concept "circle". Skipped until the
toy weights are committed.
"""

from __future__ import annotations

import pytest
import torch

from erasekit.detectors import ClipDetector, ToyJudgeDetector


def _weights_present() -> bool:
    from pathlib import Path

    from erasekit.toyworld import CLIP_DIR, JUDGE_DIR, PIPELINE_DIR

    return (
        (Path(CLIP_DIR) / "config.json").is_file()
        and (Path(JUDGE_DIR) / "model.safetensors").is_file()
        and (Path(PIPELINE_DIR) / "model_index.json").is_file()
    )


@pytest.mark.skipif(not _weights_present(), reason="toy weights not committed yet")
def test_clip_agrees_with_judge_on_generated_toy_images() -> None:
    from erasekit.toyworld import COLOURS, SHAPES, TOY_DEFAULTS, load_pipeline

    pipe = load_pipeline()
    prompts = [f"a {c} {s}" for s in SHAPES for c in COLOURS]
    images = []
    for seed in range(4):
        gens = [torch.Generator().manual_seed(1000 * seed + i) for i in range(len(prompts))]
        images += pipe(prompts, generator=gens, output_type="pil", **TOY_DEFAULTS).images
    judge = ToyJudgeDetector().detect(images, "circle")
    clip = ClipDetector("toy").detect(images, "circle")
    agree = sum(j.flagged == c.flagged for j, c in zip(judge, clip, strict=True)) / len(images)
    print(f"clip/judge agreement on 'circle': {agree:.3f} over {len(images)} images; "
          f"judge circles {sum(j.flagged for j in judge)}, clip circles {sum(c.flagged for c in clip)}")
    assert agree >= 0.9
