"""Adversarial attacks on a model's text path (MMA-Diffusion) and their automatic cache.

Modules: :mod:`~erasekit.attacks.mma` (the GCG search), :mod:`~erasekit.attacks.settings`
(its settings and scales), :mod:`~erasekit.attacks.vocabulary` (banned words, allowed
tokens), :mod:`~erasekit.attacks.plan` (a metric's cached set of attacks),
:mod:`~erasekit.attacks.cache` (the on-disk cache).
"""

from erasekit.attacks.cache import AttackCache, text_encoder_fingerprint
from erasekit.attacks.mma import ATTACK_VERSION, AttackResult, MMAAttack
from erasekit.attacks.plan import AttackPlan
from erasekit.attacks.settings import CPU_SCALE, PAPER_SCALE, AttackSettings
from erasekit.attacks.vocabulary import (
    MMA_NSFW_WORDS,
    MMA_SENSITIVE_WORDS,
    Vocabulary,
    banned_words_for,
    token_text,
)

__all__ = [
    "ATTACK_VERSION",
    "CPU_SCALE",
    "MMA_NSFW_WORDS",
    "MMA_SENSITIVE_WORDS",
    "PAPER_SCALE",
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
