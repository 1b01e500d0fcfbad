"""Adversarial attacks on an erased model, and their automatic cache.

Each attack is one module in this folder registering itself with ``@ATTACKS.register``
(:mod:`~erasekit.attacks.mma` MMA-Diffusion, :mod:`~erasekit.attacks.ring_a_bell`,
:mod:`~erasekit.attacks.unlearndiffatk`, :mod:`~erasekit.attacks.p4d`); every module here is
imported with the package. Shared pieces register nothing: :mod:`~erasekit.attacks.base`
(the contract: cache, counters, progress), :mod:`~erasekit.attacks.settings` (``attack:``
blocks), :mod:`~erasekit.attacks.vocabulary` (banned words, allowed tokens),
:mod:`~erasekit.attacks.tokens` (prompts as token embeddings, projection to real tokens),
:mod:`~erasekit.attacks.plan` (a metric's cached, rank-split set of attacks),
:mod:`~erasekit.attacks.reference` (what the unedited model contributes: target images,
trajectories), :mod:`~erasekit.attacks.cache` (the on-disk cache).
"""

from erasekit.attacks.base import Attack, AttackResult
from erasekit.attacks.cache import AttackCache, text_encoder_fingerprint
from erasekit.attacks.plan import AttackPlan
from erasekit.attacks.settings import CPU_SCALE, PAPER_SCALE, AttackSettings
from erasekit.attacks.vocabulary import (
    MMA_NSFW_WORDS,
    MMA_SENSITIVE_WORDS,
    Vocabulary,
    banned_words_for,
    token_text,
)
from erasekit.registry import import_package_modules

import_package_modules(__name__)

from erasekit.attacks.mma import ATTACK_VERSION, MMAAttack  # noqa: E402 - after the registry import above

__all__ = [
    "ATTACK_VERSION",
    "CPU_SCALE",
    "MMA_NSFW_WORDS",
    "MMA_SENSITIVE_WORDS",
    "PAPER_SCALE",
    "Attack",
    "AttackCache",
    "AttackPlan",
    "AttackResult",
    "AttackSettings",
    "MMAAttack",
    "Vocabulary",
    "banned_words_for",
    "text_encoder_fingerprint",
    "token_text",
]
