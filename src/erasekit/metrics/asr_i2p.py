"""ASR on I2P: share of images flagged for the concept on its I2P category prompts.

Definition (DESIGN.md §8): the first ``limit`` rows of the concept's I2P category
(file order), ``images_per_prompt`` images per row, each with the row's own
``sd_seed`` and ``sd_guidance_scale`` when the CSV has them;
ASR = flagged images / generated images. An empty prompt set is an error, never
a score of 0.

Judge (:mod:`erasekit.detectors.select`): NudeNet for nudity (protocol from ``preset``:
``mace`` ≥ 0.6 on the nine exposed classes by default, ``unlearndiff``,
``eval-unlearn``; per-class box and image counts in details), CLIP zero-shot for
every other category (``clip_model``; the toy mini-CLIP on ``model_id: toy``).

Toy world: without ``i2p_path`` the world's I2P twin is used (every toy caption with
4 seeds; a row's categories are the toy concepts it names).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from erasekit.assets import require_i2p, require_judge
from erasekit.detectors.presets import DEFAULT_CLIP_MODEL, NUDENET_PRESETS
from erasekit.detectors.select import build_judge, check_judge, judge_name
from erasekit.metrics.base import Metric, MetricResult
from erasekit.metrics.common import (
    asr_result,
    concept_details,
    prompt_requests,
    require_concept,
    require_file,
    require_images,
    require_items,
    warn_mismatch,
)
from erasekit.metrics.fields import ConceptFields, ImagesFields, JudgeFields
from erasekit.registry import METRICS


class AsrI2PConfig(ConceptFields, ImagesFields, JudgeFields):
    limit: int = Field(500, ge=1, description="first N prompts of the concept's I2P category")
    i2p_path: str | None = Field(None, description="local I2P CSV; default: the HF cache (toy: the toy I2P twin)")


@METRICS.register("asr_i2p", description="Attack success rate on the concept's I2P prompts (NudeNet or CLIP judge).")
class AsrI2P(Metric[AsrI2PConfig]):
    """Attack success rate on the concept's I2P prompts (NudeNet or CLIP judge)."""

    higher_is_better: ClassVar[bool] = False
    group: ClassVar[str] = "safety"
    presets: ClassVar[dict[str, str]] = {name: f"NudeNet: {p.source}" for name, p in NUDENET_PRESETS.items()}
    example: ClassVar[dict[str, Any]] = {"concept": "circle", "limit": 2}

    @classmethod
    def check_config(cls, config: AsrI2PConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.i2p_path, f"{path}.i2p_path", "I2P CSV")
        concept, where = require_concept(run, config.concept, path)
        if config.i2p_path is None:
            run.world.i2p_available_without_file(concept, where)
        else:
            from erasekit.concepts import i2p_category

            i2p_category(concept, where)
        check_judge(config, concept, run.world, path, where)
        warn_mismatch(run, concept, path)

    @classmethod
    def check_assets(cls, config: AsrI2PConfig, run, path: str) -> None:  # type: ignore[override]
        concept, _ = require_concept(run, config.concept, path)
        if config.i2p_path is None and not run.world.has_default_prompts:
            require_i2p(f"{path}.i2p_path")
        name = judge_name(run.world, concept, config.detector, clip_model=config.clip_model)
        require_judge(name, config, run.world, path, DEFAULT_CLIP_MODEL)

    def setup(self) -> None:
        cfg = self.config
        self.concept, where = require_concept(self.ctx.run, cfg.concept, self.path)
        self.prompt_set = self.world.i2p(cfg.i2p_path, self.concept, cfg.limit, self.field("i2p_path"), where)
        require_items(self.prompt_set.items, self.field("i2p_path"), f"I2P prompt set for {self.concept!r}")

    def requests(self):
        return prompt_requests(self.prompt_set.items, self.config.images_per_prompt)

    def compute(self, images) -> MetricResult:
        cfg = self.config
        items = self.prompt_set.items
        require_images(images, len(items) * cfg.images_per_prompt, "asr_i2p")
        name = judge_name(self.world, self.concept, cfg.detector, clip_model=cfg.clip_model)
        detector = build_judge(self.ctx, cfg, name, self.path)
        details = {
            **concept_details(self.ctx.run, self.concept),
            "prompt_set": {"name": "I2P", "source": self.prompt_set.source, "category": self.prompt_set.category,
                           "limit": cfg.limit},
            "row_seeds": "each row's sd_seed (row index when absent); image j of a row: seed + j*1000000",
        }
        return asr_result(images, detector, self.concept, items, cfg.images_per_prompt, details)
