"""Prompt sets and reference data: I2P, COCO captions + images, TIFA v1.0, prompt CSVs, toy twins.

Loaders return plain dataclasses (:class:`PromptItem`, :class:`TifaItem`,
:class:`ReferenceImages`). Every file problem (missing, empty, not UTF-8,
missing column, malformed JSON, bad seed) is a :class:`~erasekit.errors.ConfigError`
naming the config ``field`` the caller passes (e.g. ``metrics[1].config.prompts_path``).
The toy world's deterministic twin of each set is in :mod:`erasekit.datasets.toy`
(:class:`erasekit.toyworld.world.ToyWorld` serves them to the metrics).
"""

from erasekit.concepts import I2P_CATEGORIES, i2p_category
from erasekit.datasets.coco import coco_reference_images, load_coco_captions
from erasekit.datasets.i2p import load_i2p
from erasekit.datasets.items import PromptItem, ReferenceImages, TifaItem, TifaQuestion
from erasekit.datasets.prompt_csv import load_prompt_csv
from erasekit.datasets.tifa import load_tifa
from erasekit.datasets.toy import (
    toy_coco_captions,
    toy_concept_name,
    toy_i2p,
    toy_reference_images,
    toy_retain_prompts,
    toy_target_prompts,
    toy_tifa,
    write_example_csvs,
)

__all__ = [
    "I2P_CATEGORIES",
    "PromptItem",
    "ReferenceImages",
    "TifaItem",
    "TifaQuestion",
    "coco_reference_images",
    "i2p_category",
    "load_coco_captions",
    "load_i2p",
    "load_prompt_csv",
    "load_tifa",
    "toy_coco_captions",
    "toy_concept_name",
    "toy_i2p",
    "toy_reference_images",
    "toy_retain_prompts",
    "toy_target_prompts",
    "toy_tifa",
    "write_example_csvs",
]
