"""TIFA: VQA faithfulness on TIFA v1.0 question/choice/answer sets."""

from __future__ import annotations

from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.metrics._common import require_file
from erasekit.metrics.base import Metric
from erasekit.registry import METRICS


class TifaConfig(MetricConfig):
    limit: int = Field(200, ge=1, description="number of captions")
    vqa_model: str = Field("Salesforce/blip-vqa-base", description="BLIP-VQA folder or HF id (toy: the judge)")
    qa_path: str | None = Field(None, description="TIFA v1.0 question-answer JSON; toy default generated")


@METRICS.register("tifa", description="Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices.")
class Tifa(Metric):
    """Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices."""

    Config = TifaConfig

    @classmethod
    def check_config(cls, config: TifaConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.qa_path, f"{path}.qa_path", "TIFA question-answer JSON")

    def requests(self):
        raise NotImplementedError

    def compute(self, images):
        raise NotImplementedError
