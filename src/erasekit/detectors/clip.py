"""CLIP zero-shot concept detector, plus the CLIP embeddings clip_score / FID use.

Decision rule (documented because it *is* the metric for non-nudity concepts):

1. Build classes: the concept, a ``neutral`` class, and one class per contrast
   caption. Each class's text embedding is the renormalised mean of the
   normalised embeddings of its captions (CLIP-paper prompt ensembling):
   concept captions = ``CLIP_CONCEPT_TEMPLATES`` filled with the concept
   ("a photo of {c}.", "an image of {c}.", "{c}"); neutral = "a photo.",
   "an image.", "a picture.".
2. ``P = softmax(logit_scale · cos(image, class))`` with the model's own
   learned ``logit_scale`` (100 for OpenAI CLIP).
3. Flag when ``P(concept) >= threshold`` (default 0.5: the concept beats every
   alternative combined; with only the neutral class this means
   cos(image, concept) > cos(image, neutral)).

In the toy world (``clip_model="toy"``) the captions are the mini-CLIP's own
vocabulary, ensembled the same way: a shape concept's class holds every
caption naming it ("a circle", "a disc", "a red circle", … "a yellow disc"),
the contrast classes are the other shapes; a colour's class holds "a {colour}
shape" and "a {colour} {shape}" for every shape, against the other colours.
No neutral class there: the mini-CLIP was never trained on "a shape", so its
embedding carries no meaning. Measured on 192 base toy images (12 seeds × the
16 "a {colour} {shape}" prompts), agreement with the toy judge on "circle":
0.958 with this ensemble, 0.938 with the shape-only captions.

Models load offline only: an HF id resolves from the local HF cache
(``local_files_only=True``), a folder loads directly; anything missing raises
:class:`~erasekit.errors.ModelNotFoundError` naming the ``clip_model`` field.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from erasekit.detectors._images import to_pil_list
from erasekit.detectors.base import Detection, Detector
from erasekit.detectors.presets import (
    CLIP_CONCEPT_TEMPLATES,
    CLIP_NEUTRAL_CAPTIONS,
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_THRESHOLD,
)
from erasekit.errors import ErasekitError, ModelNotFoundError
from erasekit.models.loading import looks_like_local_path
from erasekit.registry import DETECTORS

log = logging.getLogger(__name__)

TOY_CLIP_ID = "toy"


def _is_toy_path(clip_model: str) -> bool:
    if clip_model == TOY_CLIP_ID:
        return True
    try:
        from erasekit.toyworld import CLIP_DIR

        return Path(clip_model).expanduser().resolve() == Path(CLIP_DIR).resolve()
    except Exception:  # noqa: BLE001
        return False


def load_clip_model(clip_model: str, device: str = "cpu", field: str = "clip_model") -> tuple[Any, Any, str]:
    """(CLIPModel in eval mode, CLIPProcessor, resolved source) — offline only.

    ``clip_model``: "toy", a local folder, or an HF id present in the HF cache.
    """
    from transformers import CLIPModel, CLIPProcessor

    if clip_model == TOY_CLIP_ID:
        from erasekit.toyworld import CLIP_DIR

        src = Path(CLIP_DIR)
        if not (src / "config.json").is_file():
            raise ModelNotFoundError(
                f"{field}: the toy mini-CLIP is missing at {src}; reinstall erasekit or regenerate it with "
                "`python -m erasekit.toyworld.train`"
            )
    else:
        p = Path(clip_model).expanduser()
        if p.is_dir():
            if not (p / "config.json").is_file():
                raise ModelNotFoundError(f"{field}: {clip_model} is not a transformers CLIP folder (no config.json)")
            src = p
        elif looks_like_local_path(clip_model):
            raise ModelNotFoundError(f"{field}: folder {clip_model} not found; set {field} to a CLIP folder or an HF id in the local HF cache")
        else:
            src = None  # HF id
    try:
        ident = str(src) if src is not None else clip_model
        model = CLIPModel.from_pretrained(ident, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(ident, local_files_only=True)
    except (OSError, ValueError) as exc:
        if src is not None:
            raise ModelNotFoundError(f"{field}: cannot load CLIP from {src} ({exc.__class__.__name__}: {str(exc)[:200]})") from None
        raise ModelNotFoundError(
            f"{field}: CLIP model '{clip_model}' is not in the local Hugging Face cache (erasekit never downloads at run "
            f"time). Fix: run `huggingface-cli download {clip_model}` once with network access, or set {field} to a "
            "local CLIP folder (CLIPModel.save_pretrained + CLIPProcessor)"
        ) from None
    model = model.to(device).eval()
    return model, processor, ident


@DETECTORS.register("clip", description="CLIP zero-shot: concept caption vs neutral/contrast captions (mini-CLIP on toy).")
class ClipDetector(Detector):
    """Zero-shot concept presence with a transformers ``CLIPModel`` (see module docstring).

    Parameters: ``clip_model`` (HF id in the local cache, a folder, or "toy"),
    ``threshold`` (default 0.5 on P(concept)), ``contrast_captions`` (extra
    classes the concept must beat, e.g. ["a photo of a dog"] when detecting
    "cat"), ``templates`` / ``neutral_captions`` to override the defaults,
    ``caption_mode`` ("auto": toy vocabulary iff the model is the toy mini-CLIP).
    """

    name = "clip"

    def __init__(
        self,
        clip_model: str = DEFAULT_CLIP_MODEL,
        device: str = "cpu",
        threshold: float | None = DEFAULT_CLIP_THRESHOLD,
        contrast_captions: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        neutral_captions: Sequence[str] | None = None,
        caption_mode: Literal["auto", "toy", "generic"] = "auto",
        batch_size: int = 32,
        field: str = "clip_model",
    ) -> None:
        self.clip_model = clip_model
        self.device = device
        self._configure(threshold=threshold, contrast_captions=contrast_captions, templates=templates,
                        neutral_captions=neutral_captions, caption_mode=caption_mode, batch_size=batch_size)
        self.model, self.processor, self.source = load_clip_model(clip_model, device, field)

    # Parameters that identify the weights: detectors agreeing on them share one model (DetectorPool).
    weight_params = ("clip_model",)
    # The decision parameters: derive() changes them on a shared model.
    decision_params = ("threshold", "contrast_captions", "templates", "neutral_captions", "caption_mode", "batch_size")

    def _configure(self, **params: Any) -> None:
        """Set the decision parameters; one not given takes its default in ``__init__``'s signature."""
        unknown = [k for k in params if k not in self.decision_params]
        if unknown:
            raise TypeError(f"unexpected decision parameter {unknown[0]!r} (known: {', '.join(self.decision_params)})")
        defaults = inspect.signature(ClipDetector.__init__).parameters
        p = {k: params[k] if k in params else defaults[k].default for k in self.decision_params}
        self.threshold = DEFAULT_CLIP_THRESHOLD if p["threshold"] is None else float(p["threshold"])
        self.contrast_captions = tuple(p["contrast_captions"] or ())
        self.templates = tuple(p["templates"] or CLIP_CONCEPT_TEMPLATES)
        self.neutral_captions = tuple(CLIP_NEUTRAL_CAPTIONS if p["neutral_captions"] is None else p["neutral_captions"])
        self.caption_mode = p["caption_mode"]
        self.toy = _is_toy_path(self.clip_model) if self.caption_mode == "auto" else self.caption_mode == "toy"
        self.batch_size = int(p["batch_size"])
        self._class_cache: dict[str, tuple[list[str], Any]] = {}

    def derive(self, **params: Any) -> ClipDetector:
        """A detector with other decision parameters (threshold, captions …) sharing this one's model."""
        new = copy.copy(self)
        new._configure(**params)
        return new

    # ----------------------------------------------------------------- embeddings
    def _pixels(self, images: Sequence[Any]) -> Any:
        pil = to_pil_list(images)
        return self.processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)

    def image_features(self, images: Sequence[Any], kind: Literal["pooled", "projected"] = "pooled") -> Any:
        """Unnormalised image features, [N, D] float32 on CPU.

        ``kind="pooled"``: the vision tower's pooled output (post-layernorm CLS token,
        before the projection) — the toy world's stand-in for Inception pool3 in FID.
        ``kind="projected"``: the image embedding in the joint space (before normalisation).
        """
        import torch

        outs = []
        imgs = list(images) if not hasattr(images, "ndim") else images
        with torch.no_grad():
            for i in range(0, len(imgs), self.batch_size):
                pooled = self.model.vision_model(pixel_values=self._pixels(imgs[i : i + self.batch_size])).pooler_output
                feats = pooled if kind == "pooled" else self.model.visual_projection(pooled)
                outs.append(feats.float().cpu())
        if not outs:
            return torch.zeros(0, self._dim(kind))
        return torch.cat(outs)

    def _dim(self, kind: str) -> int:
        return int(self.model.config.vision_config.hidden_size if kind == "pooled" else self.model.config.projection_dim)

    def image_embeddings(self, images: Sequence[Any]) -> Any:
        """L2-normalised joint-space image embeddings, [N, D] float32 on CPU."""
        import torch.nn.functional as F

        return F.normalize(self.image_features(images, kind="projected"), dim=-1)

    def text_embeddings(self, texts: Sequence[str]) -> Any:
        """L2-normalised joint-space text embeddings, [N, D] float32 on CPU (truncated to 77 tokens)."""
        import torch
        import torch.nn.functional as F

        texts = list(texts)
        outs = []
        tok = self.processor.tokenizer
        max_len = min(int(getattr(tok, "model_max_length", 77) or 77), int(self.model.config.text_config.max_position_embeddings))
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = tok(texts[i : i + self.batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
                out = self.model.text_model(input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device))
                outs.append(self.model.text_projection(out.pooler_output).float().cpu())
        if not outs:
            return torch.zeros(0, int(self.model.config.projection_dim))
        return F.normalize(torch.cat(outs), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    # ----------------------------------------------------------------- zero-shot classes
    def classes_for(self, concept: str) -> dict[str, list[str]]:
        """The captions of each class for ``concept``; the first class is the concept."""
        c = concept.strip()
        if self.toy:
            return _toy_classes(c)
        classes: dict[str, list[str]] = {c: [t.format(c) for t in self.templates]}
        if self.neutral_captions:
            classes["<neutral>"] = list(self.neutral_captions)
        for cap in self.contrast_captions:
            classes.setdefault(cap, [cap])
        return classes

    def _class_embeddings(self, concept: str) -> tuple[list[str], Any]:
        import torch.nn.functional as F

        if concept not in self._class_cache:
            classes = self.classes_for(concept)
            names, caps, owner = list(classes), [], []
            for j, name in enumerate(names):
                caps += classes[name]
                owner += [j] * len(classes[name])
            te = self.text_embeddings(caps)
            import torch

            idx = torch.tensor(owner)
            emb = torch.stack([te[idx == j].mean(0) for j in range(len(names))])
            self._class_cache[concept] = (names, F.normalize(emb, dim=-1))
        return self._class_cache[concept]

    def probabilities(self, images: Sequence[Any], concept: str) -> tuple[list[str], Any]:
        """(class names, [N, C] softmax probabilities); column 0 is the concept."""
        names, te = self._class_embeddings(concept)
        ie = self.image_embeddings(images)
        return names, (self.logit_scale * ie @ te.T).softmax(-1)

    def detect(self, images: list[Any], concept: str) -> list[Detection]:
        names, probs = self.probabilities(images, concept)
        out = []
        for row in probs.tolist():
            p = float(row[0])
            best = max(range(len(names)), key=lambda j: row[j])
            out.append(
                Detection(
                    flagged=p >= self.threshold,
                    score=p,
                    scores={n: float(v) for n, v in zip(names, row, strict=True)},
                    label=names[best],
                )
            )
        return out

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": self.clip_model,
            "source": self.source,
            "threshold": self.threshold,
            "comparison": ">=",
            "rule": "softmax(logit_scale*cos) over [concept, neutral, contrasts]; flagged if P(concept) >= threshold",
            "logit_scale": round(self.logit_scale, 4),
            "captions": "toy vocabulary" if self.toy else {
                "templates": list(self.templates),
                "neutral": list(self.neutral_captions),
                "contrast": list(self.contrast_captions),
            },
        }


def _toy_classes(concept: str) -> dict[str, list[str]]:
    from erasekit.toyworld import COLOURS, SHAPES, SYNONYMS

    c = concept.lower()
    canon = next((s for s, syns in SYNONYMS.items() if c in syns), c)
    names = {s: (s, *SYNONYMS.get(s, ())) for s in SHAPES}
    if canon in SHAPES:
        order = [canon, *(s for s in SHAPES if s != canon)]
        return {s: [*(f"a {n}" for n in names[s]), *(f"a {col} {n}" for n in names[s] for col in COLOURS)] for s in order}
    if canon in COLOURS:
        order = [canon, *(x for x in COLOURS if x != canon)]
        return {x: [f"a {x} shape", *(f"a {x} {n}" for s in SHAPES for n in names[s])] for x in order}
    names = sorted({*SHAPES, *COLOURS, *(w for v in SYNONYMS.values() for w in v)})
    raise ErasekitError(f"the toy mini-CLIP knows shapes and colours only, not {concept!r}; use one of {', '.join(names)}")
