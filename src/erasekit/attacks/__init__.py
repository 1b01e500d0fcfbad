"""Adversarial attacks on a model's text path (MMA-Diffusion) and their automatic cache."""

from erasekit.attacks.cache import AttackCache, text_encoder_fingerprint
from erasekit.attacks.mma import (
    ATTACK_VERSION,
    CPU_SCALE,
    MMA_NSFW_WORDS,
    MMA_SENSITIVE_WORDS,
    PAPER_SCALE,
    AttackPlan,
    AttackResult,
    AttackSettings,
    MMAAttack,
    banned_words_for,
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
    "banned_words_for",
    "text_encoder_fingerprint",
]
