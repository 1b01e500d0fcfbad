"""FID / KID math on feature matrices, in float64 numpy (no model here), and statistics files.

Why a module of its own: the numbers must be checkable against an independent
computation (tests compare with a direct scipy ``sqrtm`` Fréchet distance and
with torchmetrics), and the same math serves the standard Inception path and
the toy world's mini-CLIP features.

Definitions (torch-fidelity 0.4, which matches the original TF implementation):

- statistics: ``mu = mean(features)``, ``sigma = cov(features)`` with N-1
  normalisation (``np.cov(rowvar=False)``), both float64.
- FID = ``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``. ``tr((S1 S2)^½)`` is the
  sum of square roots of the eigenvalues of ``S1 S2`` (torch-fidelity's form). We get
  the same eigenvalues from a *symmetric* PSD matrix, which is exact, 4-5× faster than
  the general eigensolver and never complex: ``S1^½ S2 S1^½`` (D×D) or, when the
  generated side has N ≤ D rows, ``Xc S2 Xcᵀ / (N-1)`` (N×N, ``Xc`` = centred
  features; the non-zero eigenvalues of ``AB`` and ``BA`` coincide). Round-off
  negatives are clipped to 0 (the real part of their complex root).
- KID: unbiased MMD² with the polynomial kernel ``(x·y/d + 1)³``, averaged over
  ``subsets`` random subsets of ``subset_size`` rows of each set (drawn without
  replacement by ``np.random.RandomState(seed)``); mean and std are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from erasekit.errors import ConfigError
from erasekit.utils.atomic_io import atomic_write


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a feature set (float64) and how many rows made them."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def _as_2d(features: Any) -> np.ndarray:
    if hasattr(features, "detach"):  # torch tensor
        features = features.detach().cpu().double().numpy()
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected an [N, D] feature matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("features contain NaN or inf (broken images or a broken feature extractor)")
    return arr


def feature_statistics(features: Any) -> FeatureStats:
    """``FeatureStats`` of an [N, D] matrix (N >= 2: a covariance needs two rows)."""
    arr = _as_2d(features)
    if arr.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows for a covariance, got {arr.shape[0]}")
    return FeatureStats(mu=arr.mean(axis=0), sigma=np.cov(arr, rowvar=False), n=int(arr.shape[0]))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (eigenvalue form, float64)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2))


def _sqrt_eig_sum(m: np.ndarray) -> float:
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^½) for PSD S1, S2 via the symmetric matrix S1^½ S2 S1^½."""
    w, v = np.linalg.eigh((s1 + s1.T) / 2.0)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return _sqrt_eig_sum(root @ s2 @ root)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fid_features_vs_stats(features: Any, ref: FeatureStats) -> float:
    """FID of a feature matrix against reference statistics; N×N eigenproblem when N ≤ dim."""
    x = _as_2d(features)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature rows, got {n}")
    if d != ref.dim:
        raise ValueError(f"feature dims differ: {d} vs reference {ref.dim}")
    if n > d:
        return fid_from_stats(feature_statistics(x), ref)
    mu = x.mean(axis=0)
    xc = x - mu
    tr_s1 = float((xc * xc).sum()) / (n - 1)
    tr_covmean = _sqrt_eig_sum(xc @ ref.sigma @ xc.T / (n - 1))
    diff = mu - ref.mu
    return float(diff @ diff + tr_s1 + np.trace(ref.sigma) - 2.0 * tr_covmean)


def fid_from_features(f1: Any, f2: Any) -> float:
    return fid_features_vs_stats(f1, feature_statistics(f2))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    m = kxx.shape[0]
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    f1: Any, f2: Any, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """(KID mean, KID std, subset size used). ``subset_size`` is capped at the smaller set."""
    x, y = _as_2d(f1), _as_2d(f2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dims differ: {x.shape[1]} vs {y.shape[1]}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.RandomState(seed)
    vals = np.empty(int(subsets))
    for i in range(int(subsets)):
        a = x[rng.choice(x.shape[0], m, replace=False)]
        b = y[rng.choice(y.shape[0], m, replace=False)]
        vals[i] = _mmd2_unbiased(_poly_kernel(a, a), _poly_kernel(a, b), _poly_kernel(b, b))
    return float(vals.mean()), float(vals.std()), m


def min_samples(feature_dim: int) -> int:
    """The fewest images FID accepts without ``allow_small_sample`` (see the fid metric's docstring)."""
    return int(min(feature_dim, MAX_MIN_SAMPLES))


# Inception's 2048-d pool features would need 2048 images for a full-rank covariance;
# the spec's own FID example uses limit 1000 (the FID-1k protocol), so the floor is
# capped there. Smaller feature spaces (the toy's 96-d mini-CLIP) need N >= dim.
MAX_MIN_SAMPLES = 1000


# ---------------------------------------------------------------- statistics files


def save_stats_npz(path: Path, stats: FeatureStats, features: np.ndarray | None, meta: dict[str, Any]) -> None:
    """Write statistics (+ float32 features for KID, + JSON meta) atomically."""
    arrays: dict[str, Any] = {"mu": stats.mu, "sigma": stats.sigma, "meta": np.array(json.dumps(meta))}
    if features is not None:
        arrays["features"] = features.astype(np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(Path(path), write)


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
