"""Caption priors for MACE's preservation term: "what the model should keep drawing".

MACE's closed form only changes the cross-attention K/V along the directions
the erase prompts occupy, and how much it disturbs everything else depends on
which other text vectors it is told to keep. A caption prior is that "everything
else": the text vectors of ordinary captions, weighted as a whole against the
erase set (``prior_scale``). The official MACE code uses cached COCO caption
statistics for this; erasekit ships a small hand-written COCO-like list (no
download, no dataset licence) and, for the toy world, its own training
captions — the exact distribution that model was trained on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Ordinary, concept-neutral captions in the style of COCO captions (written for
# erasekit). Diverse subjects, scenes, styles and people, so the prior spans the
# directions everyday prompts use.
GENERIC_CAPTIONS: tuple[str, ...] = (
    "a man riding a bicycle down a city street",
    "a plate of food with vegetables and rice",
    "two dogs playing in the grass",
    "a cat sleeping on a couch",
    "a red car parked next to a building",
    "a group of people standing on a beach",
    "a bowl of fruit on a wooden table",
    "a train traveling over a bridge",
    "a woman holding an umbrella in the rain",
    "a kitchen with white cabinets and a window",
    "a living room with a sofa and a television",
    "a bird sitting on a tree branch",
    "a boat on a calm lake at sunset",
    "a child flying a kite in a park",
    "a laptop and a cup of coffee on a desk",
    "a bus driving on a busy road",
    "a mountain covered in snow under a blue sky",
    "a horse standing in a field",
    "a pizza with cheese and tomatoes",
    "an airplane flying through the clouds",
    "a man in a suit talking on a phone",
    "a bathroom with a sink and a mirror",
    "a street sign on a pole at an intersection",
    "a vase of flowers on a windowsill",
    "a skateboarder doing a trick on a ramp",
    "a young girl reading a book",
    "a herd of sheep grazing on a hillside",
    "a clock tower in the middle of a town",
    "an old wooden bench in a garden",
    "a surfer riding a wave in the ocean",
    "a sandwich cut in half on a plate",
    "a person skiing down a snowy slope",
    "a giraffe eating leaves from a tree",
    "a motorcycle parked on the sidewalk",
    "a bedroom with a large bed and lamps",
    "people walking through a crowded market",
    "a tennis player swinging a racket",
    "a elephant walking near a river",
    "a cake with candles on a table",
    "a city skyline at night with lights",
    "a painting of a landscape with trees and a river",
    "a portrait of an old man with a beard",
    "a watercolor painting of a village",
    "an oil painting of a bowl of apples",
    "a pencil sketch of a building",
    "a photo of a forest in autumn",
    "a close-up photo of a flower",
    "a black and white photo of a street",
    "a cartoon drawing of a house",
    "a digital illustration of a castle",
    "a woman smiling at the camera",
    "a man and a woman sitting at a cafe",
    "a soccer game in a stadium",
    "a desk with a computer monitor and keyboard",
    "a bridge over a river in a city",
    "a cow standing in a barn",
    "a fire hydrant on the side of the road",
    "a teddy bear sitting on a bed",
    "a refrigerator in a small kitchen",
    "a baseball player holding a bat",
    "a family having dinner together",
    "a snowy road through a forest",
    "a dog catching a frisbee",
    "a boy eating an ice cream cone",
    "a picture",
    "a photo",
    "an image",
    "",
)


def read_caption_file(path: str | Path, field: str = "technique.config.prior_captions") -> list[str]:
    """One caption per line (UTF-8); blank lines and lines starting with '#' are skipped.
    A missing, non-regular, binary or empty file is a ConfigError naming ``field``."""
    from erasekit.datasets.io import read_text

    lines = read_text(path, field, "caption file").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def caption_prior(model_id: str, source: str | None, field: str = "technique.config.prior_captions") -> tuple[list[str], str]:
    """A caption prior as a list, and a short label of where it came from.

    ``None`` → none; ``"auto"`` → the base model's own caption set (the toy world's
    training captions for the toy model, :data:`GENERIC_CAPTIONS` otherwise); any
    other string → a text file with one caption per line.
    """
    if source is None:
        return [], "none"
    if source == "auto":
        from erasekit.world import world_for

        world = world_for(model_id)
        captions = world.prior_captions()
        if captions is not None:
            return captions, f"auto:{world.name} captions"
        return list(GENERIC_CAPTIONS), "auto:built-in generic captions"
    return read_caption_file(source, field), f"file:{source}"


def captions_digest(captions: list[str]) -> str:
    """Content identity of a caption list (what the edit depends on, not the file name)."""
    return hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()[:16]
