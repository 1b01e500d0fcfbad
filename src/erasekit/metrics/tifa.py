"""TIFA: VQA faithfulness on TIFA v1.0 question/choice/answer sets.

Protocol (Hu et al., ICCV 2023, TIFA v1.0):

- Captions and their multiple-choice questions come from ``qa_path``
  (``tifa_v1.0_question_answers.json``; not bundled — the loader says where to get
  it); the toy world uses generated shape/colour questions when ``qa_path`` is
  unset (:func:`erasekit.datasets.toy_tifa`). First ``limit`` captions, file order.
- ``images_per_prompt`` images per caption (TIFA: 1; ``images_per_caption`` is accepted), request seeds 0..M-1.
- Each question goes to the VQA model as free text; the free-form answer is
  *snapped* to the closest choice (:func:`erasekit.detectors.vqa.snap_to_choice`:
  exact → yes/no → containment → word overlap → character similarity) and is
  correct when the snapped choice is the answer (after normalisation). The TIFA
  code snaps with SBERT; existing re-implementations often skip snapping and
  compare strings, which scores "a dog" ≠ "dog" as wrong.
- Per-caption accuracy = mean over its questions (and images); **TIFA = mean
  over captions**.
- VQA: ``vqa_model`` (BLIP-VQA folder / HF id in the local cache); in the toy
  world the default becomes the toy judge answering shape/colour questions
  (``vqa_model: toy`` selects it explicitly).

Details add accuracy per TIFA element type and, when the run erases a concept
(or ``concept`` is set), the score of captions that name the concept or a synonym
vs. all other captions — erasure should lower the first and keep the second.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from erasekit.assets import require_hf_model
from erasekit.errors import ConfigError
from erasekit.generation.request import ImageRequest
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.metrics.common import (
    get_detector,
    images_of,
    mean,
    names_any,
    require_file,
    require_images,
    require_items,
)
from erasekit.metrics.fields import ConceptFields, ImagesFields
from erasekit.registry import METRICS

DEFAULT_VQA = "Salesforce/blip-vqa-base"


class TifaConfig(ConceptFields, ImagesFields):
    limit: int = Field(200, ge=1, description="number of captions")
    vqa_model: str | None = Field(None, min_length=1, description="BLIP-VQA folder or HF id (default Salesforce/blip-vqa-base; toy: the judge)")
    qa_path: str | None = Field(None, description="TIFA v1.0 question-answer JSON; toy default generated")
    concept: str | None = Field(
        None, min_length=1, description="split the score by captions naming this concept (default: the technique's primary concept)"
    )


@METRICS.register("tifa", description="Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices.")
class Tifa(Metric[TifaConfig]):
    """Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices."""

    higher_is_better: ClassVar[bool] = True
    group: ClassVar[str] = "quality"
    example: ClassVar[dict[str, Any]] = {"limit": 2}
    default_models: ClassVar[dict[str, str]] = {"vqa_model": DEFAULT_VQA}

    @classmethod
    def check_config(cls, config: TifaConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.qa_path, f"{path}.qa_path", "TIFA question-answer JSON")

    @classmethod
    def check_assets(cls, config: TifaConfig, run, path: str) -> None:  # type: ignore[override]
        if config.qa_path is None and not run.world.has_default_prompts:
            from erasekit.datasets.tifa import TIFA_URL

            raise ConfigError(f"{path}.qa_path", "no TIFA question-answer file (TIFA v1.0 is not bundled)",
                              f"download it from {TIFA_URL} and set qa_path")
        vqa = run.world.vqa_model(config.vqa_model, DEFAULT_VQA)
        if vqa != "toy":
            require_hf_model(vqa, f"{path}.vqa_model", "VQA model")

    def setup(self) -> None:
        self.items, self.qa_source = self.world.tifa(self.config.qa_path, self.config.limit, self.field("qa_path"))
        require_items(self.items, self.field("qa_path"), "TIFA caption set")

    def vqa_name(self) -> str:
        return self.world.vqa_model(self.config.vqa_model, DEFAULT_VQA)

    def concept_words(self) -> list[str]:
        """The words whose presence puts a caption in the "names the concept" group (with synonyms)."""
        concepts = [self.config.concept] if self.config.concept else list(self.ctx.concepts)
        words: list[str] = []
        for c in concepts:
            for w in self.world.synonyms(c):
                if w not in words:
                    words.append(w)
        return words

    def requests(self) -> list[ImageRequest]:
        m = self.config.images_per_prompt
        return [ImageRequest(it.caption, seed=k) for it in self.items for k in range(m)]

    def compute(self, images: list[Any]) -> MetricResult:
        from erasekit.detectors.vqa import normalise_answer, snap_to_choice

        items = self.items
        m = self.config.images_per_prompt
        require_images(images, len(items) * m, "tifa")
        vqa = get_detector(self.ctx, self.config, "vqa", field=self.field("vqa_model"), vqa_model=self.vqa_name())
        # one VQA call for every (image, question) pair
        pairs: list[tuple[int, int, int]] = []  # (caption index, image index, question index)
        for ci, it in enumerate(items):
            for k in range(m):
                for qi in range(len(it.questions)):
                    pairs.append((ci, ci * m + k, qi))
        pil = images_of(images)
        free = vqa.answer([pil[ii] for _, ii, _ in pairs], [items[ci].questions[qi].question for ci, _, qi in pairs]) if pairs else []
        correct: dict[tuple[int, int], list[bool]] = {}
        answers: dict[int, list[dict[str, Any]]] = {}
        by_type: dict[str, list[bool]] = {}
        for (ci, ii, qi), f in zip(pairs, free, strict=True):
            q = items[ci].questions[qi]
            snapped = snap_to_choice(f, q.choices)
            ok = snapped is not None and normalise_answer(snapped) == normalise_answer(q.answer)
            correct.setdefault((ci, ii), []).append(ok)
            by_type.setdefault(q.element_type or "unknown", []).append(ok)
            answers.setdefault(ii, []).append({"question": q.question, "answer": q.answer, "free_answer": f,
                                               "snapped": snapped, "correct": ok, "element_type": q.element_type})
        words = self.concept_words()
        per_caption: list[float] = []
        groups: dict[str, list[float]] = {"with_concept": [], "without_concept": []}
        records: list[dict[str, Any]] = []
        for ci, it in enumerate(items):
            oks = [o for k in range(m) for o in correct.get((ci, ci * m + k), [])]
            acc = mean(oks, f"answered questions for caption {it.id!r}")
            per_caption.append(acc)
            named = names_any(it.caption, words)
            if words:
                groups["with_concept" if named else "without_concept"].append(acc)
            for k in range(m):
                ii = ci * m + k
                img_oks = correct.get((ci, ii), [])
                records.append(image_record(images[ii], caption_id=it.id, caption_accuracy=acc, names_concept=named,
                                            image_accuracy=sum(img_oks) / len(img_oks) if img_oks else 0.0,
                                            questions=answers.get(ii, [])))
        value = mean(per_caption, "captions")
        details: dict[str, Any] = {
            "tifa": value,
            "definition": "mean over captions of the share of questions answered correctly (VQA answer snapped to the closest choice)",
            "captions": len(items),
            "questions": sum(len(it.questions) for it in items),
            "images_per_prompt": m,
            "accuracy_by_element_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())},
            "question_accuracy": sum(sum(v) for v in by_type.values()) / max(1, sum(len(v) for v in by_type.values())),
            "vqa": vqa.protocol() if hasattr(vqa, "protocol") else {"vqa": self.vqa_name()},
            "qa_source": self.qa_source,
            "variant": self.ctx.variant,
        }
        if words:
            details["by_concept"] = {
                "concept_words": words,
                **{g: {"tifa": (sum(v) / len(v)) if v else None, "captions": len(v)} for g, v in groups.items()},
            }
        return MetricResult(value=value, details=details, records=records)
