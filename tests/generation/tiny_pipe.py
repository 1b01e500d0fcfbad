"""The tiny SD-shaped pipeline the generation-engine tests drive (built offline, seeded).

Why: the engine must not care which model it drives, and its tests must run on a 2-core
CPU without the toy-world weights or any download. It is ``tests/tiny_sd.py``'s pipeline
with a byte-level tokenizer (every prompt tokenizes distinctly); seeded construction, so
every process (test, SIGKILLed subprocess, rerun) builds bit-identical weights.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_sd import build_tiny_sd  # noqa: E402

#: sampler settings the engine tests use with this pipeline
STEPS = 3
GUIDANCE = 4.0


def build_tiny_pipeline(tmp_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionPipeline with ~100k random parameters sampling 16×16 images."""
    from diffusers import StableDiffusionPipeline

    folder = build_tiny_sd(Path(tmp_dir) / "pipe", seed=seed, byte_tokenizer=True)
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
