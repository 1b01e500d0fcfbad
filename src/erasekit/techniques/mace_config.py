"""MACE's options (:class:`MACEConfig`), their defaults, and why they are the defaults.

Config fields follow the user-facing spec (shared/spec/mace-technique.md) exactly;
erasekit's extensions are optional and documented on :class:`MACEConfig`. The
technique itself is :mod:`erasekit.techniques.mace`. This module registers nothing.

Defaults and why (toy world, final shipped weights, erase "circle", judge-scored,
8 seeds per prompt; base: circle prompts 1.00 circles, other shapes 1.00 shape /
1.00 colour accuracy):

* ``alignment: following`` — the concept token *and every position after it*.
  A causal text encoder copies the concept into end-of-text and padding, and the
  UNet reads all positions: concept-token-only alignment leaves 0.75-1.00 circles.
* caption prior ``"auto"`` at ``prior_scale: 0.05`` — preservation is the real
  control knob: with no preserved captions the other shapes collapse to 0.38
  shape / 0.71 colour accuracy; any prior weight in 0.01-1 keeps them at 1.00.
  Preserving only the other shape *names* (``preserve_concepts``) keeps shapes
  (0.93-0.95) but loses colour (0.48-0.82): real captions are the better prior.
* ``overshoot: 0.0`` — the spec's semantics: every listed term is mapped *onto*
  the neutral representation (or ``erase_from``'s). A mapping is only as clean as
  its target: on the current toy weights circle prompts then draw 0.275 circles,
  the neutral targets ("a red" … "a") 0.225 themselves. ``overshoot: 1`` (maps
  past the target, away from the concept: ESD's negative guidance η = 1 in text
  space) gives 0.00 circles with the other shapes at 1.00 / 1.00, but it was
  tuned on this toy world and turns circles into crosses, which is not neutral;
  it stays available as the tuned variant.
* ``recipe: official_cfr`` — the official MACE CFR stage exactly (templates,
  alignment, caption prior weighted ``train_preserve_scale²``, λ as in its
  configs); see ``README_mace.md``. The LoRA and fusion stages are not run.
* ``lambda_cfr: 0.1`` (spec) — an absolute ridge as in MACE; negligible next to
  the Grams below ~100 on the toy world, fading the edit out from 10³ (0.10
  circles) to 10⁵ (1.00).
* ``erase_from: shape`` → 0.00 circles with colour accuracy 1.00; erasing
  ``["circle", "disc"]`` → 0.00 / 0.00; "circle" alone leaves "a disc" at 1.00.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from erasekit.techniques.editing import EditConfig, as_list, check_templates

# Prompts the erase concept is placed in. Short, generic, and varied in what
# precedes and follows the concept, so that the edit covers the concept's
# vectors in many contexts (a causal encoder writes the context into them).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a {}",
    "a photo of {}",
    "an image of {}",
    "a picture of {}",
    "a painting of {}",
    "a drawing of {}",
    "{} in a photo",
)


# The official CFR stage's prompt augmentation (Shilin-LU/MACE, src/cfr_utils.py): 31 templates per
# concept type, of which the shipped configs (aug_length = prompt_len = 30) use the first 30.
OFFICIAL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "object": (
        "{} in a photo", "{} in a snapshot", "A snapshot of {}", "A photograph showcasing {}", "An illustration of {}",
        "A digital rendering of {}", "A visual representation of {}", "A graphic of {}", "A shot of {}", "A photo of {}",
        "A black and white image of {}", "A depiction in portrait form of {}", "A scene depicting {} during a public gathering",
        "{} captured in an image", "A depiction created with oil paints capturing {}", "An image of {}",
        "A drawing capturing the essence of {}", "An official photograph featuring {}", "A detailed sketch of {}",
        "{} during sunset/sunrise", "{} in a detailed portrait", "An official photo of {}", "Historic photo of {}",
        "Detailed portrait of {}", "A painting of {}", "HD picture of {}", "Magazine cover capturing {}",
        "Painting-like image of {}", "Hand-drawn art of {}", "An oil portrait of {}", "{} in a sketch painting",
    ),
    "style": (
        "An artwork by {}", "Art piece by {}", "A recent creation by {}", "{}'s renowned art", "Latest masterpiece by {}",
        "A stunning image by {}", "An art in {}'s style", "Exhibition artwork of {}", "Art display by {}",
        "a beautiful painting by {}", "An image inspired by {}'s style", "A sketch by {}", "Art piece representing {}",
        "A drawing by {}", "Artistry showcasing {}", "An illustration by {}", "A digital art by {}", "A visual art by {}",
        "A reproduction inspired by {}'s colorful, expressive style", "Famous painting of {}", "A famous art by {}",
        "Artistic style of {}", "{}'s famous piece", "Abstract work of {}", "{}'s famous drawing",
        "Art from {}'s early period", "A portrait by {}", "An imitation reflecting the style of {}",
        "An painting from {}'s collection", "Vibrant reproduction of artwork by {}", "Artistic image influenced by {}",
    ),
}
OFFICIAL_AUG_LENGTH = 30
#: keys the official CFR recipe fixes itself (setting one with ``recipe: official_cfr`` is a config error)
OFFICIAL_FIXED: tuple[str, ...] = ("templates", "alignment", "overshoot", "preserve_concepts", "preserve_scale", "prior_scale")


class MACEConfig(EditConfig):
    """MACE options. The first block is the spec's; the rest are erasekit extensions (all optional).

    Spec fields (names, types, defaults as in the spec's configuration reference):
    ``erase_concept``, ``erase_from``, ``lambda_cfr``, ``load_path``, ``save_path``,
    plus the shared ``num_inference_steps``, ``guidance_scale``, ``use_fp16``, ``device``.
    ``erase_from`` (``null``: the concept is dropped from the prompt, the spec's
    neutral target; a string: the concept is replaced by it, "a red circle" →
    "a red shape"; a list: one target per ``erase_concept`` entry).

    Extensions (defaults measured on the toy world, see the module docstring):

    * ``templates`` — prompts the concept is put in (``{}`` = the concept). Default
      :data:`DEFAULT_TEMPLATES`.
    * ``alignment`` — which token positions the CFR moves (see
      :func:`erasekit.techniques.closed_form.align_positions`): ``following`` (default:
      the concept and every position after it — in a causal text encoder they all
      carry the concept), ``prefix_suffix`` (the official MACE CFR alignment:
      context tokens only, the concept tokens left to a LoRA stage erasekit does
      not run) or ``concept`` (the concept tokens only).
    * ``overshoot`` — targets become ``t + overshoot·(t − e)``: past the target,
      away from the concept (default 0: the spec's plain mapping; 1 = the tuned variant).
    * ``recipe`` / ``concept_type`` / ``train_preserve_scale`` — ``official_cfr`` runs
      the official MACE CFR stage (its templates of ``concept_type``, its alignment, a
      caption prior weighted ``train_preserve_scale²``); the other CFR options are then
      fixed (setting one is a config error).
    * ``preserve_concepts`` / ``preserve_scale`` — concepts to keep unchanged, put
      in the same templates; each of their vectors weighs ``preserve_scale`` times
      an erased vector.
    * ``prior_captions`` / ``prior_scale`` — a caption prior: ``"auto"`` (the base
      model's own caption set: the toy world's training captions for the toy
      model, erasekit's built-in COCO-like list otherwise), a text file with one
      caption per line, or ``null`` for none. Captions that mention an erased
      concept become erase prompts (the concept replaced by the target); all
      others are kept, together weighing ``prior_scale`` times the erase set,
      whatever the number of captions.
    """

    erase_from: str | list[str] | None = Field(None, description="broader concept the erased one dissolves into (default: the empty prompt)")
    lambda_cfr: float = Field(0.1, ge=0.0, description="CFR regularisation; higher = more conservative (0: only with official_cfr and a caption prior)")

    templates: list[str] | None = Field(None, description="prompts with '{}' for the concept (default: built-in list)")
    alignment: Literal["following", "prefix_suffix", "concept"] = Field(
        "following", description="token positions the CFR moves: concept + following (default), MACE's prefix/suffix, or concept only"
    )
    preserve_concepts: list[str] = Field(default_factory=list, description="concepts to keep, placed in the same templates")
    preserve_scale: float = Field(0.1, ge=0.0, description="weight of each preserved-concept vector relative to an erased vector")
    prior_captions: str | None = Field("auto", description="'auto', a caption file (one per line) or null")
    prior_scale: float = Field(0.05, ge=0.0, description="total weight of the caption prior relative to the erase set")
    overshoot: float = Field(0.0, ge=0.0, le=10.0, description="map to target + overshoot·(target − concept): past the target, away from the concept (0 = the spec's mapping)")
    recipe: Literal["erasekit", "official_cfr"] = Field(
        "erasekit", description="erasekit (the spec's CFR with erasekit's prior) or official_cfr (the official MACE CFR stage, exactly)"
    )
    concept_type: Literal["object", "style"] = Field("object", description="official_cfr: which official template list (object also for celebrities and nudity)")
    train_preserve_scale: float | None = Field(
        None, ge=0.0, description="official_cfr: the official train_preserve_scale (7e-7 explicit content, 1e-4 celebrities/art); applied squared, as the official code does"
    )

    @field_validator("erase_from")
    @classmethod
    def _from_non_empty(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is not None and (not as_list(v) or any(not s.strip() for s in as_list(v))):
            raise ValueError("erase_from must be null, a non-empty string, or a list of non-empty strings")
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: list[str] | None) -> list[str] | None:
        return check_templates(v, "the default list")


__all__ = ["DEFAULT_TEMPLATES", "OFFICIAL_AUG_LENGTH", "OFFICIAL_FIXED", "OFFICIAL_TEMPLATES", "MACEConfig", "as_list"]
