"""The ``attack:`` settings of the metrics that attack, and the two reference scales.

:data:`PAPER_SCALE` (steps 500, topk 256, batch 512, 20 tokens) is what the metrics
default to; :data:`CPU_SCALE` is enough for the toy world's small text encoder (see
:mod:`erasekit.attacks.mma`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from erasekit.config import StrictModel


class AttackSettings(StrictModel):
    """The ``attack:`` config block of every metric that attacks (``err``, ``mma_diffusion``).

    Defaults = paper scale. ``batch_size`` is GCG's name for the single-token swaps evaluated
    per step (``batch`` is accepted). ``n_candidates`` adversarial prompts are searched per
    target (restarts with their own seeds). Upper bounds keep a typo from starting a search
    that never ends.
    """

    key_aliases: ClassVar[dict[str, str]] = {"batch": "batch_size"}

    n_tokens: int = Field(20, ge=1, le=75, description="adversarial tokens (MMA: 20)")
    steps: int = Field(500, ge=1, le=100_000, description="GCG steps (paper scale 500; CPU/toy scale 40)")
    topk: int = Field(256, ge=1, le=65_536, description="candidate tokens per position (paper 256; toy 32)")
    batch_size: int = Field(512, ge=1, le=65_536, description="single-token swaps evaluated per step (paper 512; toy 96)")
    n_candidates: int = Field(1, ge=1, le=1000, description="adversarial prompts (restarts) per target")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the initial prompt and the candidate sampling")


#: Paper-scale parameters (the metrics' defaults): GPU minutes per target on SD v1.4.
PAPER_SCALE = AttackSettings()
#: CPU/toy-scale parameters used by the tests on the toy world (seconds per target).
CPU_SCALE = AttackSettings(n_tokens=20, steps=40, topk=32, batch_size=96)
