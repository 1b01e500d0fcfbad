"""FID (and KID) of generated images against a reference image set.

Protocol:

- **Images**: one per caption, the first ``limit`` captions of ``captions_path``
  (COCO captions JSON or CSV; seed = the row's seed column, else its index).
- **Features**:
  ``inception`` (default on real models): torch-fidelity's TF-compatible
  InceptionV3 (``FeatureExtractorInceptionV3``, 2048-d pool3 features, images
  resized to 299×299 with TF1-style bilinear interpolation — the standard FID
  network, as used by torchmetrics and torch-fidelity). Its weights come from a
  local file, ``inception_weights_path`` (torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth``; also looked up in the torch hub
  cache). The file is read with ``torch.load(weights_only=True)``: no pickle code
  runs. Missing file → ModelNotFoundError naming the field.
  ``clip``: a CLIP vision tower's pooled output (before the projection); on
  ``model_id: toy`` (``auto``) this is the mini-CLIP (96-d) and the reference set is
  the toy renderer's procedural images.
- **FID** = Fréchet distance of the two Gaussians (float64; see ``_frechet``);
  **KID** (``kid: true``) = unbiased polynomial-kernel MMD² averaged over
  ``kid_subsets`` subsets of ``kid_subset_size`` (capped at the smaller set).
- **Minimum sample size**: a covariance estimated from N < D images is singular and
  FID is then mostly estimator noise. The metric refuses fewer than
  ``min(feature dim, 1000)`` generated or reference images (2048-d Inception → 1000,
  the spec's own FID-1k setting; the toy's 96-d mini-CLIP features → 96) unless
  ``allow_small_sample: true``; the report then says ``small_sample: true``.
- **Protocols** (``preset``):

  =============  ===============================================================  ================================
  preset         source                                                           differs from the default
  =============  ===============================================================  ================================
  ``standard``   torch-fidelity / torchmetrics FID: TF-Inception pool3 2048-d,     — (default)
                 TF1 bilinear resize; N = ``limit`` (1,000: the spec's FID-1k)
  ``clean-fid``  clean-fid (Parmar et al., CVPR 2022), the FID MACE reports:        PIL bicubic float resize;
                 "clean" PIL bicubic resize of each channel as float, the same       30,000 images (COCO-30k)
                 TF-Inception pool3, 30,000 COCO images (``coco_30k.csv`` captions,
                 a reference folder of the matching COCO images)
  =============  ===============================================================  ================================

  Deliberate difference: the spec system (eval_learn) computes FID on torchvision's
  ImageNet Inception-V3 (not the TF FID network) against 1,000 COCO-2017 train images;
  those numbers are not comparable to any published FID, so erasekit keeps the standard
  network as its default (``standard``) and does not offer that variant.
- **Reference statistics** are cached in ``<cache_dir>/fid_stats/<id>.npz`` keyed by
  (reference set identity, feature extractor identity incl. a weights hash, N), with
  the features themselves for KID. ``reference_path`` may also be such an ``.npz``
  (``mu``, ``sigma``; ``features`` for KID); its recorded extractor must match.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from erasekit.assets import require_hf_model, require_inception
from erasekit.config import MetricConfig
from erasekit.detectors.select import check_clip_model
from erasekit.errors import ConfigError, ErasekitError
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.metrics.common import get_detector, images_of, prompt_requests, require_file, require_images
from erasekit.metrics.frechet import (
    FeatureStats,
    feature_statistics,
    fid_features_vs_stats,
    kernel_inception_distance,
    min_samples,
    read_stats_npz,
    save_stats_npz,
)
from erasekit.metrics.protocols import Protocol
from erasekit.models.inception import (
    INCEPTION_DIM,
    find_inception_weights,
    inception_features,
    load_inception,
)
from erasekit.registry import METRICS
from erasekit.utils.canonical import stable_hash
from erasekit.utils.hashing import folder_digest, sha256_file

log = logging.getLogger(__name__)

DEFAULT_CLIP_FEATURES = "openai/clip-vit-large-patch14"
STATS_VERSION = 1


class FidConfig(MetricConfig):
    limit: int = Field(1000, ge=2, description="number of generated images (one per caption)")
    captions_path: str | None = Field(None, description="captions to generate from (COCO-style)")
    reference_path: str | None = Field(None, description="folder of reference images, or a cached .npz of statistics")
    reference_limit: int | None = Field(None, ge=2, description="first N reference images (default: all; toy: 1000 renders)")
    feature_extractor: Literal["auto", "inception", "clip"] = Field("auto", description="auto: inception (mini-CLIP on toy)")
    inception_weights_path: str | None = Field(None, description="local pt_inception-2015-12-05 weights file")
    clip_model: str | None = Field(None, min_length=1, description="CLIP for feature_extractor clip (default ViT-L/14; mini-CLIP on toy)")
    allow_small_sample: bool = Field(False, description="allow fewer images than the feature dimension (noisy FID)")
    kid: bool = Field(True, description="also compute KID")
    kid_subsets: int = Field(100, ge=1, le=10000, description="KID: number of random subsets")
    kid_subset_size: int = Field(1000, ge=2, description="KID: images per subset (capped at the smaller set)")
    batch_size: int = Field(32, ge=1, le=1024, description="images per feature-extractor batch")
    resize: Literal["torch-fidelity", "clean"] = Field(
        "torch-fidelity", description="Inception input resize: torch-fidelity's TF1 bilinear, or clean-fid's PIL bicubic"
    )


PROTOCOLS = {
    p.name: p for p in (
        Protocol("standard", "torch-fidelity / torchmetrics FID: TF-Inception pool3 2048-d, TF1 bilinear resize",
                 "FID-{n}", {"resize": "torch-fidelity"}),
        Protocol("clean-fid", "clean-fid (Parmar et al., CVPR 2022) as MACE reports it: PIL bicubic resize, pool3 2048-d, COCO-30k",
                 "FID-{n}", {"resize": "clean", "limit": 30000}, n=30000,
                 differs="clean resize (PIL bicubic, float); 30,000 COCO captions and reference images"),
    )
}


def extractor_kind(config: FidConfig, world: Any) -> str:
    """``auto`` → the world's standard features (Inception; the mini-CLIP on toy)."""
    return world.feature_extractor(config.feature_extractor)


# ---------------------------------------------------------------- feature extractors

class _Extractor:
    """The resolved feature extractor of one FID run: name, identity, dim and a features() call."""

    def __init__(self, kind: str, ident: str, dim: int, fn: Any, info: dict[str, Any]) -> None:
        self.kind, self.ident, self.dim, self._fn, self.info = kind, ident, dim, fn, info

    def features(self, images: list[Any]) -> np.ndarray:
        return self._fn(images)


# ---------------------------------------------------------------- stats cache


# ---------------------------------------------------------------- the metric


@METRICS.register("fid", description="Frechet Inception Distance (+KID) against a reference image set.")
class Fid(Metric[FidConfig]):
    """Frechet Inception Distance (+KID) against a reference image set."""

    higher_is_better: ClassVar[bool] = False
    group: ClassVar[str] = "quality"
    default_models: ClassVar[dict[str, str]] = {}  # clip_model only matters with feature_extractor: clip
    protocols: ClassVar[dict[str, Protocol]] = PROTOCOLS
    default_protocol: ClassVar[str] = "standard"
    example: ClassVar[dict[str, Any]] = {"limit": 4, "reference_limit": 8, "allow_small_sample": True, "kid_subset_size": 4,
                                         "kid_subsets": 2}

    @classmethod
    def check_config(cls, config: FidConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.captions_path, f"{path}.captions_path", "captions file")
        require_file(config.reference_path, f"{path}.reference_path", "reference set", folder_ok=True)
        require_file(config.inception_weights_path, f"{path}.inception_weights_path", "Inception weights")
        if config.inception_weights_path and not Path(config.inception_weights_path).expanduser().is_file():
            raise ConfigError(f"{path}.inception_weights_path", f"{config.inception_weights_path} is not a file", "point it at the .pth file")
        kind = extractor_kind(config, run.world)
        if config.clip_model and kind != "clip":
            raise ConfigError(f"{path}.clip_model", "clip_model is used with feature_extractor: clip only", "remove it or set feature_extractor: clip")
        if config.inception_weights_path and kind != "inception":
            raise ConfigError(f"{path}.inception_weights_path", f"the feature extractor is {kind}, not inception", "remove it or set feature_extractor: inception")
        if config.clip_model:
            check_clip_model(config.clip_model, f"{path}.clip_model")
        if config.reference_path and Path(config.reference_path).suffix.lower() != ".npz" and not Path(config.reference_path).is_dir():
            raise ConfigError(f"{path}.reference_path", f"{config.reference_path} is neither a folder of images nor a .npz", "give a folder or an FID statistics .npz")
        dim = INCEPTION_DIM if kind == "inception" else _clip_dim_from_config(config, run.world)
        if dim is not None and not config.allow_small_sample:
            need = min_samples(dim)
            if config.limit < need:
                raise ConfigError(
                    f"{path}.limit", f"{config.limit} images are too few for FID on {dim}-d {kind} features (minimum {need})",
                    f"set limit >= {need}, or allow_small_sample: true to accept a noisy estimate",
                )
            if config.reference_limit is not None and config.reference_limit < need:
                raise ConfigError(f"{path}.reference_limit", f"{config.reference_limit} reference images are too few (minimum {need})",
                                  f"set reference_limit >= {need}, or allow_small_sample: true")

    @classmethod
    def check_assets(cls, config: FidConfig, run, path: str) -> None:  # type: ignore[override]
        if not run.world.has_default_prompts:
            for key, what in (("captions_path", "captions file"), ("reference_path", "reference image folder or statistics .npz")):
                if getattr(config, key) is None:
                    raise ConfigError(f"{path}.{key}", f"no {what} (COCO is not bundled)", f"set {key}")
        if extractor_kind(config, run.world) == "inception":
            require_inception(config.inception_weights_path, f"{path}.inception_weights_path")
        else:
            require_hf_model(run.world.clip_model(config.clip_model, DEFAULT_CLIP_FEATURES), f"{path}.clip_model", "CLIP model")

    # ------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        self._path = self.path
        self._kind = extractor_kind(cfg, self.world)
        captions = self.world.captions(cfg.captions_path, cfg.limit, self.field("captions_path"))
        self._items, self._captions_source = captions.items, captions.source
        if self._kind == "inception":
            # Fail before any image is generated when the network cannot be loaded.
            self._weights = find_inception_weights(cfg.inception_weights_path, f"{self._path}.inception_weights_path")
            self._dim = INCEPTION_DIM
        else:
            self._dim = int(self._clip().model.config.vision_config.hidden_size)
        self._min = min_samples(self._dim)
        self._check_n(len(self._items), "generated images (captions available)", "limit / captions_path")

    def _check_n(self, n: int, what: str, fields: str) -> None:
        cfg = self.config
        if n < 2:
            raise ErasekitError(f"{self._path}: FID needs at least 2 {what}, got {n}")
        if n < self._min and not cfg.allow_small_sample:
            raise ErasekitError(
                f"{self._path}: {n} {what} are too few for FID on {self._dim}-d {self._kind} features (minimum "
                f"min(dim, 1000) = {self._min}). Fix: raise {fields}, or set allow_small_sample: true to accept a noisy estimate"
            )

    def _clip(self) -> Any:
        cfg = self.config
        model = self.world.clip_model(cfg.clip_model, DEFAULT_CLIP_FEATURES)
        return get_detector(self.ctx, cfg, "clip", field=f"{self._path}.clip_model", clip_model=model)

    def _extractor(self) -> _Extractor:
        cfg = self.config
        if self._kind == "inception":
            device = _device(self.ctx, cfg)
            net = load_inception(self._weights, device, f"{self._path}.inception_weights_path")
            sha = sha256_file(self._weights)
            resize = cfg.resize
            info = {"name": "inception", "network": "torch-fidelity FeatureExtractorInceptionV3 (TF-compatible)",
                    "layer": "pool3 (2048)", "resize": "TF1 bilinear to 299x299 (torch-fidelity)" if resize == "torch-fidelity"
                    else "clean-fid: PIL bicubic to 299x299 per channel, float, clipped to [0, 255]",
                    "weights_path": str(self._weights), "weights_sha256": sha, "dim": INCEPTION_DIM, "source": str(self._weights)}
            ident = f"tfi-inception-v3-2048:{sha[:16]}" + ("" if resize == "torch-fidelity" else f":{resize}")
            return _Extractor("inception", ident, INCEPTION_DIM,
                              lambda ims: inception_features(net, ims, device, cfg.batch_size, resize=resize), info)
        clip = self._clip()
        src = Path(str(getattr(clip, "source", clip.clip_model)))
        digest = folder_digest(src)[:16] if src.is_dir() else str(getattr(clip, "source", clip.clip_model))
        info = {"name": "clip", "model": clip.clip_model, "source": str(getattr(clip, "source", "")),
                "layer": "vision_model pooler_output (before projection)", "resize": "CLIPProcessor", "dim": self._dim}
        return _Extractor("clip", f"clip-pooled:{digest}", self._dim,
                          lambda ims: clip.image_features(ims, kind="pooled").double().numpy(), info)

    # ------------------------------------------------------------ reference
    def _reference(self, ext: _Extractor) -> tuple[FeatureStats, np.ndarray | None, dict[str, Any]]:
        cfg = self.config
        field = f"{self._path}.reference_path"
        if cfg.reference_path and Path(cfg.reference_path).suffix.lower() == ".npz":
            p = Path(cfg.reference_path).expanduser()
            stats, feats, meta = read_stats_npz(p, field)
            rec = meta.get("extractor")
            if rec is not None and rec != ext.ident:
                raise ErasekitError(f"{field}: {p} was computed with feature extractor {rec!r}, this run uses {ext.ident!r}; "
                                    "recompute the statistics (point reference_path at the image folder)")
            if stats.mu.shape[0] != ext.dim:
                raise ErasekitError(f"{field}: {p} holds {stats.mu.shape[0]}-d statistics, the extractor gives {ext.dim}-d features")
            if stats.n:
                self._check_n(stats.n, "reference images", "reference_path")
            return stats, feats, {"source": str(p), "kind": "statistics file", "n": stats.n, "cached": True,
                                  "extractor_recorded": rec}
        ref = self.world.reference_images(cfg.reference_path, cfg.reference_limit, field)
        n = len(ref)
        self._check_n(n, "reference images", "reference_limit / reference_path")
        payload = {"v": STATS_VERSION, "reference": ref.key, "extractor": ext.ident, "n": n}
        key = stable_hash(payload, 20)
        cache_file = Path(self.ctx.cache_dir) / "fid_stats" / f"{key}.npz"
        info = {"source": ref.source, "key": ref.key, "n": n, "cache_file": str(cache_file)}
        if cache_file.is_file():
            try:
                stats, feats, meta = read_stats_npz(cache_file, field)
                if meta.get("extractor") == ext.ident and meta.get("reference") == ref.key and stats.n == n:
                    return stats, feats, {**info, "cached": True}
            except (ConfigError, KeyError):
                log.warning("ignoring unreadable FID statistics cache %s", cache_file)
        chunks = [ext.features(batch) for batch in ref.iter_batches(cfg.batch_size)]
        feats = np.concatenate(chunks)
        stats = feature_statistics(feats)
        meta = {**payload, "source": ref.source}
        save_stats_npz(cache_file, stats, feats, meta)
        return stats, feats, {**info, "cached": False}

    # ------------------------------------------------------------ API
    def requests(self):
        return prompt_requests(self._items, 1, row_guidance=False)

    def compute(self, images):
        cfg = self.config
        require_images(images, len(self._items), "fid")
        self._check_n(len(images), "generated images", "limit")
        ext = self._extractor()
        ref_stats, ref_feats, ref_info = self._reference(ext)
        gen = ext.features(images_of(images))
        fid = fid_features_vs_stats(gen, ref_stats)
        details: dict[str, Any] = {
            "definition": "Frechet distance between Gaussians fitted to generated and reference features "
            "(|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), float64; tr((S1 S2)^1/2) from the eigenvalues of S1 S2, as torch-fidelity)",
            "fid": fid,
            "feature_extractor": ext.info | {"id": ext.ident},
            "n_generated": int(gen.shape[0]),
            "n_reference": int(ref_stats.n),
            "reference": ref_info,
            "captions": {"source": self._captions_source, "limit": cfg.limit, "n": len(self._items)},
            "min_samples": self._min,
            "min_samples_rule": "min(feature dim, 1000) generated and reference images",
            "allow_small_sample": cfg.allow_small_sample,
            "small_sample": bool(gen.shape[0] < self._min or (ref_stats.n and ref_stats.n < self._min)),
        }
        if cfg.kid:
            if ref_feats is None:
                details["kid"] = None
                details["kid_note"] = "the reference statistics file holds no features; KID needs them"
            else:
                mean, std, m = kernel_inception_distance(gen, ref_feats, cfg.kid_subsets, cfg.kid_subset_size, seed=0)
                details.update(kid=mean, kid_std=std, kid_subset_size=m, kid_subsets=cfg.kid_subsets,
                               kid_kernel="polynomial (x.y/d + 1)^3, unbiased MMD^2, rng seed 0")
        dist = np.linalg.norm(gen - ref_stats.mu[None, :], axis=1)
        records = [
            image_record(img, feature_norm=float(np.linalg.norm(f)), dist_to_reference_mean=float(d))
            for img, f, d in zip(images, gen, dist, strict=True)
        ]
        return MetricResult(value=fid, details=details, records=records)


def _device(ctx: Any, config: FidConfig) -> str:
    from erasekit.models.loading import resolve_device

    if config.device and config.device != "auto":
        return resolve_device(config.device)
    pool = getattr(ctx, "detectors", None)
    return getattr(pool, "device", None) or resolve_device("auto")


def _clip_dim_from_config(config: FidConfig, world: Any) -> int | None:
    """The CLIP vision width from a local config.json (None when only known after loading)."""
    from erasekit.detectors.clip import TOY_CLIP_ID

    model = world.clip_model(config.clip_model, DEFAULT_CLIP_FEATURES)
    if model == TOY_CLIP_ID:
        from erasekit.toyworld import CLIP_DIR

        folder: Path | None = Path(CLIP_DIR)
    else:
        folder = Path(model).expanduser() if Path(model).expanduser().is_dir() else None
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        cfg = json.loads((folder / "config.json").read_text())
        return int(cfg["vision_config"]["hidden_size"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
