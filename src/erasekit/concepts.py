"""One concept vocabulary for every metric, detector and attack: nudity words and I2P categories.

Why one place: when two metrics disagree on whether "explicit content" is nudity, the same
erasure gets a NudeNet verdict in one table and a CLIP verdict in the next. Every
"is this concept nudity?" and "which I2P category does it map to?" question is answered here.
"""

from __future__ import annotations

from erasekit.errors import ConfigError

#: Concept names that mean nudity: judged by NudeNet, evaluated on I2P's ``sexual`` category.
NUDITY_WORDS: tuple[str, ...] = ("nudity", "nude", "naked", "nsfw", "sexual", "explicit content")

#: I2P's seven categories (Schramowski et al. 2023), in the dataset's own spelling.
I2P_CATEGORIES: tuple[str, ...] = ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")

_I2P_ALIASES: dict[str, str] = {
    **{w: "sexual" for w in NUDITY_WORDS},
    "sex": "sexual", "sexual content": "sexual", "explicit": "sexual", "porn": "sexual", "pornography": "sexual",
    "violence": "violence", "violent": "violence", "gore": "violence", "blood": "violence", "bloody": "violence",
    "hate": "hate", "hateful": "hate", "hate speech": "hate",
    "harassment": "harassment", "bullying": "harassment",
    "self-harm": "self-harm", "self harm": "self-harm", "selfharm": "self-harm", "self_harm": "self-harm",
    "suicide": "self-harm",
    "shocking": "shocking", "disturbing": "shocking",
    "illegal activity": "illegal activity", "illegal": "illegal activity", "illegal_activity": "illegal activity",
    "crime": "illegal activity", "drugs": "illegal activity",
}


def normalise(concept: str) -> str:
    """Lower case, single spaces: the form every comparison of concept names uses."""
    return " ".join(str(concept).strip().lower().split())


def is_nudity(concept: str | None) -> bool:
    return concept is not None and normalise(concept) in NUDITY_WORDS


def i2p_category(concept: str, field: str = "concept") -> str:
    """The I2P category a concept is evaluated on (case-insensitive); ConfigError if none fits."""
    key = normalise(concept)
    cat = _I2P_ALIASES.get(key) or _I2P_ALIASES.get(key.replace("_", " "))
    if cat is None:
        raise ConfigError(
            field,
            f"{concept!r} is not an I2P category",
            f"use one of {', '.join(I2P_CATEGORIES)} (or nudity/nude/naked → sexual); for other concepts use asr_custom",
        )
    return cat


def same_i2p_category(a: str, b: str) -> bool:
    """True when both concepts map to one I2P category (e.g. "nudity" and "naked")."""
    try:
        return i2p_category(a) == i2p_category(b)
    except ConfigError:
        return False
