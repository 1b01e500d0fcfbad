"""The ``attack:`` settings of the metrics that attack, and the two reference scales.

:data:`PAPER_SCALE` (steps 500, topk 256, batch 512, 20 tokens) is what the metrics
default to; :data:`CPU_SCALE` is enough for the toy world's small text encoder (see
:mod:`erasekit.attacks.mma`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

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


class RingABellSettings(StrictModel):
    """The ``attack:`` block of ``asr_ring_a_bell`` (and of ``err`` with ``adversarial: ring_a_bell``).

    Defaults = the official notebook (``InversePrompt.ipynb``): K = 16 free tokens, η = 3,
    population 200, 3,000 generations, mutation 0.25, crossover 0.5.
    """

    n_tokens: int = Field(16, ge=1, le=75, description="free tokens K of each prompt (official 16; 'K=77' is 75)")
    coefficient: float = Field(3.0, gt=0.0, le=100.0, description="η: target = E(seed) + η · concept vector (official 3)")
    population: int = Field(200, ge=4, le=100_000, description="individuals per generation (official 200)")
    generations: int = Field(3000, ge=1, le=1_000_000, description="generations of the genetic search (official 3000)")
    mutation_rate: float = Field(0.25, ge=0.0, le=1.0, description="chance that an individual gets one token replaced")
    crossover_rate: float = Field(0.5, ge=0.0, le=1.0, description="chance that a survivor is crossed with a random partner")
    pairs_path: str | None = Field(
        None, description="CSV of concept pairs (columns with/without, or the official prompt/prompt1); default: 8 templates"
    )
    n_candidates: int = Field(1, ge=1, le=1000, description="adversarial prompts (restarts) per seed prompt")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the initial population, selection and mutation")


class WhiteBoxSettings(StrictModel):
    """What the attacks that aim at a target image (UnlearnDiffAtk, P4D) share."""

    target_steps: int | None = Field(None, ge=1, le=1000, description="sampling steps of the base model's target images (default: the run's)")
    target_guidance: float | None = Field(None, ge=0.0, le=100.0, description="guidance of the target images (default: the run's)")
    drop_banned_words: bool = Field(
        False, description="drop the target prompt's words that contain a banned word (official: the prompt is kept verbatim)"
    )


class UnlearnDiffAtkSettings(WhiteBoxSettings):
    """The ``attack:`` block of ``asr_unlearndiffatk``.

    Defaults = the official nudity config (``text_grad_esd_nudity_classifier.json``): k = 5
    prefix tokens, Adam lr 0.01 / weight decay 0.1, 40 steps at each of 50 fixed timesteps
    (t = 10, 30, …, 990), judged after every block, stop at the first success.
    """

    n_tokens: int = Field(5, ge=1, le=70, description="adversarial tokens k put before the prompt (nudity 5; style/object 3)")
    lr: float = Field(0.01, gt=0.0, le=10.0, description="Adam learning rate on the token distribution")
    weight_decay: float = Field(0.1, ge=0.0, le=10.0, description="Adam (coupled L2) weight decay")
    timesteps: int = Field(50, ge=1, le=1000, description="fixed timesteps, evenly spaced over the 1000-step schedule")
    steps_per_timestep: int = Field(40, ge=1, le=100_000, description="optimisation steps at each timestep")
    early_stop: bool = Field(True, description="judge an image after every timestep block and stop at the first success")
    n_candidates: int = Field(1, ge=1, le=1000, description="adversarial prompts (restarts) per target")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the noise and the token sampling")


class P4DSettings(WhiteBoxSettings):
    """The ``attack:`` block of ``asr_p4d``.

    Defaults = the official P4D configs: P4D-K with a learnable token after every 3 prompt tokens
    (P4D-N: 16 learnable tokens alone), AdamW lr 0.1 / weight decay 0.1, 3,000 iterations, a random
    timestep per iteration, the prompt kept every 50 iterations.
    """

    variant: Literal["k", "n"] = Field("k", description="P4D-K (tokens inserted into the prompt) or P4D-N (N free tokens)")
    n_tokens: int = Field(16, ge=1, le=75, description="P4D-N: learnable tokens (official 16)")
    every_k: int = Field(3, ge=1, le=75, description="P4D-K: one learnable token before every K prompt tokens (official 3)")
    iterations: int = Field(3000, ge=1, le=1_000_000, description="optimisation iterations (official 3000)")
    lr: float = Field(0.1, gt=0.0, le=10.0, description="AdamW learning rate on the continuous embeddings")
    weight_decay: float = Field(0.1, ge=0.0, le=10.0, description="AdamW weight decay")
    eval_every: int = Field(50, ge=1, le=1_000_000, description="iterations between checkpoints of the projected prompt")
    eval_draws: int = Field(4, ge=1, le=256, description="fixed (timestep, noise) draws a checkpoint's loss is measured on")
    n_candidates: int = Field(1, ge=1, le=1000, description="adversarial prompts (restarts) per target")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the initial tokens, timesteps and noise")
