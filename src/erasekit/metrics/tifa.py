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

Protocols (``preset``): how an answer is scored (``snapping``), averaged (``aggregate``)
and which captions (``subset``):

================  ===============================================================  ==============================
preset            source                                                           differs from the default
================  ===============================================================  ==============================
``eval-unlearn``  the spec system (eval_learn ``tifa``): the VQA answer compared    — (default)
                  to the answer string (lower-cased, stripped; no choice
                  snapping), pooled over all questions, first 200 captions
``tifa``          TIFA v1.0 (Hu et al., ICCV 2023): exact match to a choice, else   SBERT snapping; mean per image
                  SBERT (all-mpnet-base-v2) nearest choice; accuracy per image,    then over images; all captions
                  then mean over images; every caption of the benchmark file
``erasekit``      erasekit: lexical snapping (exact → yes/no → containment →        lexical snapping; mean over
                  overlap → similarity), mean per caption then over captions        captions
================  ===============================================================  ==============================

``subset: random`` draws ``limit`` captions with ``subset_seed`` (a seeded random subset
instead of the file's first rows). Deliberate differences: eval_learn's VQA is BLIP-2
flan-t5-xl and TIFA's is mPLUG-large; erasekit loads BLIP-VQA (``vqa_model``), so the VQA
model is the one part of those protocols the label cannot claim — it names the model used.

Details add accuracy per TIFA element type and, when the run erases a concept
(or ``concept`` is set), the score of captions that name the concept or a synonym
vs. all other captions — erasure should lower the first and keep the second.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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
from erasekit.metrics.protocols import Protocol
from erasekit.registry import METRICS

DEFAULT_VQA = "Salesforce/blip-vqa-base"


class TifaConfig(ConceptFields, ImagesFields):
    limit: int = Field(200, ge=1, description="number of captions")
    vqa_model: str | None = Field(None, min_length=1, description="BLIP-VQA folder or HF id (default Salesforce/blip-vqa-base; toy: the judge)")
    qa_path: str | None = Field(None, description="TIFA v1.0 question-answer JSON; toy default generated")
    concept: str | None = Field(
        None, min_length=1, description="split the score by captions naming this concept (default: the technique's primary concept)"
    )
    snapping: Literal["exact", "lexical", "sbert"] = Field("lexical", description="answer → choice: string match, lexical rules, or SBERT")
    sbert_model: str | None = Field(None, min_length=1, description="sentence encoder for snapping: sbert (default all-mpnet-base-v2)")
    aggregate: Literal["caption", "image", "question"] = Field("caption", description="mean per caption, per image, or pooled over questions")
    subset: Literal["first", "random"] = Field("first", description="first `limit` captions, or a seeded random subset")
    subset_seed: int = Field(0, ge=0, description="seed of the random subset")


PROTOCOLS = {
    p.name: p for p in (
        Protocol("eval-unlearn", "eval_learn tifa (the spec system): exact answer match, pooled over questions, first 200 captions",
                 "TIFA exact", {"snapping": "exact", "aggregate": "question", "limit": 200}, n=200),
        Protocol("tifa", "TIFA v1.0 (ICCV 2023): exact-or-SBERT choice snapping, mean per image, all 4,081 captions",
                 "TIFA SBERT", {"snapping": "sbert", "aggregate": "image", "limit": 4081}, n=4081,
                 differs="SBERT snapping; per-image mean; every caption"),
        Protocol("erasekit", "erasekit: lexical choice snapping, mean over captions",
                 "TIFA lexical", {"snapping": "lexical", "aggregate": "caption"},
                 differs="lexical snapping; per-caption mean"),
    )
}


@METRICS.register("tifa", description="Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices.")
class Tifa(Metric[TifaConfig]):
    """Faithfulness: VQA accuracy on TIFA v1.0 questions, answers snapped to choices."""

    higher_is_better: ClassVar[bool] = True
    group: ClassVar[str] = "quality"
    example: ClassVar[dict[str, Any]] = {"limit": 2}
    default_models: ClassVar[dict[str, str]] = {"vqa_model": DEFAULT_VQA}
    protocols: ClassVar[dict[str, Protocol]] = PROTOCOLS
    default_protocol: ClassVar[str] = "eval-unlearn"

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
        if config.snapping == "sbert":
            from erasekit.detectors.sbert import DEFAULT_SBERT

            require_hf_model(config.sbert_model or DEFAULT_SBERT, f"{path}.sbert_model", "sentence encoder")

    def setup(self) -> None:
        cfg = self.config
        if cfg.subset == "random":
            import random

            items, self.qa_source = self.world.tifa(cfg.qa_path, None, self.field("qa_path"))
            keep = sorted(random.Random(cfg.subset_seed).sample(range(len(items)), min(cfg.limit, len(items))))
            self.items = [items[i] for i in keep]
        else:
            self.items, self.qa_source = self.world.tifa(cfg.qa_path, cfg.limit, self.field("qa_path"))
        require_items(self.items, self.field("qa_path"), "TIFA caption set")

    def snapper(self) -> Any:
        """answer, choices → the choice it counts as (None = wrong), by ``snapping``."""
        from erasekit.detectors.vqa import snap_to_choice

        cfg = self.config
        if cfg.snapping == "exact":
            return lambda answer, choices: answer
        if cfg.snapping == "sbert":
            from erasekit.detectors.sbert import DEFAULT_SBERT, sentence_encoder, snap_sbert

            enc = sentence_encoder(cfg.sbert_model or DEFAULT_SBERT, field=self.field("sbert_model"))
            return lambda answer, choices: snap_sbert(answer, choices, enc.encode)
        return snap_to_choice

    @staticmethod
    def is_correct(snapped: str | None, answer: str, snapping: str) -> bool:
        """exact: the answer string itself (lower-cased, stripped) equals the correct one;
        otherwise the snapped choice equals it after answer normalisation."""
        from erasekit.detectors.vqa import normalise_answer

        if snapped is None:
            return False
        if snapping == "exact":
            return snapped.strip().lower() == answer.strip().lower()
        return normalise_answer(snapped) == normalise_answer(answer)

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
        items = self.items
        snap = self.snapper()
        rule = self.config.snapping
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
            snapped = snap(f, q.choices)
            ok = self.is_correct(snapped, q.answer, rule)
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
        agg = self.config.aggregate
        all_oks = [o for v in correct.values() for o in v]
        if agg == "question":
            value = mean([float(o) for o in all_oks], "answered questions")
        elif agg == "image":
            value = mean([sum(v) / len(v) for v in correct.values() if v], "images with questions")
        else:
            value = mean(per_caption, "captions")
        details: dict[str, Any] = {
            "tifa": value,
            "definition": {"question": "correct answers / questions, pooled over every image",
                           "image": "mean over images of the share of their questions answered correctly",
                           "caption": "mean over captions of the share of questions answered correctly"}[agg]
            + f"; answers scored by {rule} matching",
            "snapping": rule,
            "aggregate": agg,
            "subset": {"rule": self.config.subset, "seed": self.config.subset_seed, "limit": self.config.limit},
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
