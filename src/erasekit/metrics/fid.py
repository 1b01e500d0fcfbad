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
- **Reference statistics** are cached in ``<cache_dir>/fid_stats/<id>.npz`` keyed by
  (reference set identity, feature extractor identity incl. a weights hash, N), with
  the features themselves for KID. ``reference_path`` may also be such an ``.npz``
  (``mu``, ``sigma``; ``features`` for KID); its recorded extractor must match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from erasekit.config import MetricConfig
from erasekit.errors import ConfigError, ErasekitError, ModelNotFoundError
from erasekit.metrics._common import (
    config_path,
    default_clip_model,
    get_detector,
    images_of,
    prompt_requests,
    require_file,
    require_images,
)
from erasekit.metrics._frechet import (
    FeatureStats,
    feature_statistics,
    fid_features_vs_stats,
    kernel_inception_distance,
    min_samples,
)
from erasekit.metrics.base import Metric, MetricResult, image_record
from erasekit.registry import METRICS
from erasekit.utils.hashing import folder_digest, sha256_file

log = logging.getLogger(__name__)

INCEPTION_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_DIM = 2048
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


def extractor_kind(config: FidConfig, is_toy: bool) -> str:
    if config.feature_extractor != "auto":
        return config.feature_extractor
    return "clip" if is_toy else "inception"


# ---------------------------------------------------------------- feature extractors

_LOCK = threading.Lock()
_INCEPTIONS: dict[tuple[str, str], Any] = {}
def find_inception_weights(configured: str | None, field: str) -> Path:
    """The Inception weights file: the configured path, else torch-fidelity's file in the torch hub cache."""
    if configured:
        p = Path(configured).expanduser()
        if not p.is_file():
            raise ModelNotFoundError(f"{field}: Inception weights file not found: {configured}")
        return p
    try:
        import torch

        hub = Path(torch.hub.get_dir()) / "checkpoints"
    except Exception:  # noqa: BLE001
        hub = Path.home() / ".cache" / "torch" / "hub" / "checkpoints"
    for name in INCEPTION_FILE_NAMES:
        if (hub / name).is_file():
            return hub / name
    raise ModelNotFoundError(
        f"{field} is not set and no FID Inception weights are in the torch hub cache ({hub}); erasekit never "
        "downloads at run time. Fix: download https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        f"{INCEPTION_FILE_NAMES[0]} once and set {field} to its path"
    )


def load_inception(weights: Path, device: str = "cpu", field: str = "inception_weights_path") -> Any:
    """torch-fidelity's FeatureExtractorInceptionV3 ('2048' pool features) with weights read safely.

    torch-fidelity itself would ``torch.load(weights_only=False)`` the file; we read it with
    ``weights_only=True`` and hand the tensors to its constructor instead.
    """
    import torch

    try:
        import torch_fidelity.feature_extractor_inceptionv3 as tfi
    except ImportError:
        raise ModelNotFoundError(
            "the standard FID network needs torch-fidelity: `pip install torch-fidelity` (or `pip install erasekit[fid]`)"
        ) from None
    digest = sha256_file(weights)
    key = (digest, str(device))
    with _LOCK:
        if key in _INCEPTIONS:
            return _INCEPTIONS[key]
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelNotFoundError(f"{field}: cannot read {weights} as a weights-only state dict ({exc.__class__.__name__})") from None
        if not isinstance(state, dict) or "Conv2d_1a_3x3.conv.weight" not in state:
            raise ModelNotFoundError(f"{field}: {weights} is not an FID InceptionV3 state dict (torch-fidelity / pytorch-fid format)")
        if not hasattr(tfi, "load_state_dict_from_url"):
            raise ModelNotFoundError("unsupported torch-fidelity version (no load_state_dict_from_url hook); use torch-fidelity 0.3 or 0.4")
        original = tfi.load_state_dict_from_url
        tfi.load_state_dict_from_url = lambda *a, **k: state  # constructor asks for the weights: give ours
        try:
            net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", [str(INCEPTION_DIM)])
        except RuntimeError as exc:  # key / shape mismatch
            raise ModelNotFoundError(f"{field}: {weights} does not fit torch-fidelity's InceptionV3 ({str(exc)[:200]})") from None
        finally:
            tfi.load_state_dict_from_url = original
        net = net.to(device).eval()
        _INCEPTIONS[key] = net
        return net


def inception_features(net: Any, images: list[Any], device: str, batch_size: int = 32) -> np.ndarray:
    """[N, 2048] float64 pool features of RGB PIL images (uint8 in, TF-style resize inside)."""
    import torch

    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            arrs = [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images[i : i + batch_size]]
            groups: dict[tuple[int, ...], list[int]] = {}
            for j, a in enumerate(arrs):
                groups.setdefault(a.shape, []).append(j)
            feats: list[Any] = [None] * len(arrs)
            for idx in groups.values():
                x = torch.from_numpy(np.stack([arrs[j] for j in idx])).permute(0, 3, 1, 2).contiguous().to(device)
                f = net(x)[0].double().cpu().numpy()
                for row, j in enumerate(idx):
                    feats[j] = f[row]
            out.append(np.stack(feats))
    return np.concatenate(out) if out else np.zeros((0, INCEPTION_DIM))


class _Extractor:
    """The resolved feature extractor of one FID run: name, identity, dim and a features() call."""

    def __init__(self, kind: str, ident: str, dim: int, fn: Any, info: dict[str, Any]) -> None:
        self.kind, self.ident, self.dim, self._fn, self.info = kind, ident, dim, fn, info

    def features(self, images: list[Any]) -> np.ndarray:
        return self._fn(images)


# ---------------------------------------------------------------- stats cache


def _npz_save(path: Path, **arrays: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_stats_npz(path: Path, field: str) -> tuple[FeatureStats, np.ndarray | None, dict[str, Any]]:
    """(stats, features or None, meta) from a statistics .npz (ours, or pytorch-fid's mu/sigma files)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "mu" not in z or "sigma" not in z:
                raise ConfigError(field, f"{path} has no 'mu' and 'sigma' arrays", "give an FID statistics .npz (mu, sigma) or an image folder")
            mu = np.asarray(z["mu"], np.float64)
            sigma = np.asarray(z["sigma"], np.float64)
            feats = np.asarray(z["features"], np.float64) if "features" in z else None
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
    except (OSError, ValueError) as exc:
        raise ConfigError(field, f"cannot read {path} as .npz ({exc.__class__.__name__})", "give an FID statistics .npz or an image folder") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ConfigError(field, f"{path}: mu {mu.shape} / sigma {sigma.shape} do not fit together", "regenerate the statistics")
    n = int(meta.get("n", feats.shape[0] if feats is not None else 0))
    return FeatureStats(mu=mu, sigma=sigma, n=n), feats, meta


# ---------------------------------------------------------------- the metric


@METRICS.register("fid", description="Frechet Inception Distance (+KID) against a reference image set.")
class Fid(Metric):
    """Frechet Inception Distance (+KID) against a reference image set."""

    Config = FidConfig

    @classmethod
    def check_config(cls, config: FidConfig, run, path: str) -> None:  # type: ignore[override]
        require_file(config.captions_path, f"{path}.captions_path", "captions file")
        require_file(config.reference_path, f"{path}.reference_path", "reference set")
        require_file(config.inception_weights_path, f"{path}.inception_weights_path", "Inception weights")
        if config.inception_weights_path and not Path(config.inception_weights_path).expanduser().is_file():
            raise ConfigError(f"{path}.inception_weights_path", f"{config.inception_weights_path} is not a file", "point it at the .pth file")
        kind = extractor_kind(config, run.technique_config.is_toy)
        if config.clip_model and kind != "clip":
            raise ConfigError(f"{path}.clip_model", "clip_model is used with feature_extractor: clip only", "remove it or set feature_extractor: clip")
        if config.inception_weights_path and kind != "inception":
            raise ConfigError(f"{path}.inception_weights_path", f"the feature extractor is {kind}, not inception", "remove it or set feature_extractor: inception")
        if config.clip_model:
            from erasekit.metrics.asr_i2p import check_clip_model

            check_clip_model(config.clip_model, f"{path}.clip_model")
        if config.reference_path and Path(config.reference_path).suffix.lower() != ".npz" and not Path(config.reference_path).is_dir():
            raise ConfigError(f"{path}.reference_path", f"{config.reference_path} is neither a folder of images nor a .npz", "give a folder or an FID statistics .npz")
        dim = INCEPTION_DIM if kind == "inception" else _clip_dim_from_config(config, run.technique_config.is_toy)
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

    # ------------------------------------------------------------ setup
    def _setup(self) -> None:
        if getattr(self, "_items", None) is not None:
            return
        from erasekit.datasets import load_coco_captions

        cfg: FidConfig = self.config  # type: ignore[assignment]
        self._path = config_path(self.ctx, cfg)
        self._kind = extractor_kind(cfg, self.ctx.is_toy)
        self._items = load_coco_captions(cfg.captions_path, cfg.limit, toy=self.ctx.is_toy, field=f"{self._path}.captions_path")
        self._captions_source = cfg.captions_path or "toy COCO-like captions (erasekit.datasets.toy)"
        if self._kind == "inception":
            # Fail before any image is generated when the network cannot be loaded.
            self._weights = find_inception_weights(cfg.inception_weights_path, f"{self._path}.inception_weights_path")
            self._dim = INCEPTION_DIM
        else:
            self._dim = int(self._clip().model.config.vision_config.hidden_size)
        self._min = min_samples(self._dim)
        self._check_n(len(self._items), "generated images (captions available)", "limit / captions_path")

    def _check_n(self, n: int, what: str, fields: str) -> None:
        cfg: FidConfig = self.config  # type: ignore[assignment]
        if n < 2:
            raise ErasekitError(f"{self._path}: FID needs at least 2 {what}, got {n}")
        if n < self._min and not cfg.allow_small_sample:
            raise ErasekitError(
                f"{self._path}: {n} {what} are too few for FID on {self._dim}-d {self._kind} features (minimum "
                f"min(dim, 1000) = {self._min}). Fix: raise {fields}, or set allow_small_sample: true to accept a noisy estimate"
            )

    def _clip(self) -> Any:
        cfg: FidConfig = self.config  # type: ignore[assignment]
        model = default_clip_model(self.ctx, cfg.clip_model, DEFAULT_CLIP_FEATURES)
        return get_detector(self.ctx, cfg, "clip", field=f"{self._path}.clip_model", clip_model=model)

    def _extractor(self) -> _Extractor:
        cfg: FidConfig = self.config  # type: ignore[assignment]
        if self._kind == "inception":
            device = _device(self.ctx, cfg)
            net = load_inception(self._weights, device, f"{self._path}.inception_weights_path")
            sha = sha256_file(self._weights)
            info = {"name": "inception", "network": "torch-fidelity FeatureExtractorInceptionV3 (TF-compatible)",
                    "layer": "pool3 (2048)", "resize": "TF1 bilinear to 299x299 (torch-fidelity)",
                    "weights_path": str(self._weights), "weights_sha256": sha, "dim": INCEPTION_DIM}
            return _Extractor("inception", f"tfi-inception-v3-2048:{sha[:16]}", INCEPTION_DIM,
                              lambda ims: inception_features(net, ims, device, cfg.batch_size), info)
        clip = self._clip()
        src = Path(str(getattr(clip, "source", clip.clip_model)))
        digest = folder_digest(src)[:16] if src.is_dir() else str(getattr(clip, "source", clip.clip_model))
        info = {"name": "clip", "model": clip.clip_model, "source": str(getattr(clip, "source", "")),
                "layer": "vision_model pooler_output (before projection)", "resize": "CLIPProcessor", "dim": self._dim}
        return _Extractor("clip", f"clip-pooled:{digest}", self._dim,
                          lambda ims: clip.image_features(ims, kind="pooled").double().numpy(), info)

    # ------------------------------------------------------------ reference
    def _reference(self, ext: _Extractor) -> tuple[FeatureStats, np.ndarray | None, dict[str, Any]]:
        from erasekit.datasets import coco_reference_images

        cfg: FidConfig = self.config  # type: ignore[assignment]
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
        ref = coco_reference_images(cfg.reference_path, cfg.reference_limit, toy=self.ctx.is_toy, field=field)
        n = len(ref)
        self._check_n(n, "reference images", "reference_limit / reference_path")
        payload = {"v": STATS_VERSION, "reference": ref.key, "extractor": ext.ident, "n": n}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
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
        _npz_save(cache_file, mu=stats.mu, sigma=stats.sigma, features=feats.astype(np.float32), meta=np.array(json.dumps(meta)))
        return stats, feats, {**info, "cached": False}

    # ------------------------------------------------------------ API
    def requests(self):
        self._setup()
        return prompt_requests(self._items, 1, row_guidance=False)

    def compute(self, images):
        self._setup()
        cfg: FidConfig = self.config  # type: ignore[assignment]
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


def _clip_dim_from_config(config: FidConfig, is_toy: bool) -> int | None:
    """The CLIP vision width from a local config.json (None when only known after loading)."""
    folder: Path | None = None
    if config.clip_model is None or config.clip_model == "toy":
        if not is_toy:
            return None
        from erasekit.toyworld import CLIP_DIR

        folder = Path(CLIP_DIR)
    elif Path(config.clip_model).expanduser().is_dir():
        folder = Path(config.clip_model).expanduser()
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        cfg = json.loads((folder / "config.json").read_text())
        return int(cfg["vision_config"]["hidden_size"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
