"""FID / KID: the math against independent computations, the Inception plumbing with a random
network saved to a file, the metric end to end on a tiny CLIP feature extractor (cache, .npz
reference, minimum sample size), and config validation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from support.metric_harness import metric_for, run_config, serve

from erasekit.errors import ConfigError, ErasekitError, ModelNotFoundError
from erasekit.metrics.frechet import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    min_samples,
)


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (pytorch-fid style): scipy sqrtm of S1·S2."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------- math


def test_fid_equals_direct_scipy_computation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 24))
    b = rng.normal(0.3, 1.3, size=(350, 24)) @ rng.normal(size=(24, 24)) * 0.4
    ours = fid_from_features(a, b)
    assert ours > 1.0
    assert abs(ours - scipy_fid(a, b)) < 1e-3


def test_fid_low_rank_path_equals_the_general_eigenvalue_form() -> None:
    """N ≤ D (the usual case: 1000 images, 2048-d): the N×N form equals torch-fidelity's eig(S1 S2) form."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 40)) @ rng.normal(size=(40, 40))
    b = rng.normal(0.2, 1.0, size=(60, 40)) @ rng.normal(size=(40, 40))
    sa, sb = feature_statistics(a), feature_statistics(b)
    eig = np.linalg.eigvals(sa.sigma @ sb.sigma).astype(np.complex128)
    general = float(((sa.mu - sb.mu) ** 2).sum() + np.trace(sa.sigma) + np.trace(sb.sigma) - 2 * np.sqrt(eig).sum().real)
    assert abs(fid_from_features(a, b) - general) < 1e-3 * max(1.0, general)
    assert abs(frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma) - general) < 1e-3 * max(1.0, general)
    c = rng.normal(size=(500, 40))  # N > D path against scipy
    assert abs(fid_from_features(c, b) - scipy_fid(c, b)) < 1e-3


def test_fid_of_identical_features_is_zero() -> None:
    rng = np.random.default_rng(1)
    full = rng.normal(size=(300, 32))
    assert abs(fid_from_features(full, full)) < 1e-6
    singular = rng.normal(size=(40, 96))  # N < D: singular covariance, still ~0
    assert abs(fid_from_features(singular, singular)) < 1e-3


def test_fid_equals_torchmetrics_on_the_same_features() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(torch.nn.Module):
        num_features = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 16)), rng.normal(0.5, 1.0, size=(180, 16))
    m = FrechetInceptionDistance(feature=Identity())
    m.update(torch.tensor(a), real=True)
    m.update(torch.tensor(b), real=False)
    assert abs(float(m.compute()) - fid_from_features(b, a)) < 1e-3


def test_kid_equals_torch_fidelity() -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(120, 8)), rng.normal(0.2, 1.0, size=(130, 8))
    ref = kid_features_to_metric(torch.tensor(a), torch.tensor(b), kid_subsets=7, kid_subset_size=50, rng_seed=0,
                                 kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1, verbose=False)
    mean, std, m = kernel_inception_distance(a, b, subsets=7, subset_size=50, seed=0)
    assert m == 50
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-9)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-9)
    assert kernel_inception_distance(a, b, subsets=2, subset_size=10_000)[2] == 120  # capped at the smaller set


def test_statistics_and_rule() -> None:
    st = feature_statistics(np.arange(12.0).reshape(4, 3))
    assert st.n == 4 and st.dim == 3 and st.sigma.shape == (3, 3)
    with pytest.raises(ValueError):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        feature_statistics(np.array([[np.nan, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    assert min_samples(96) == 96 and min_samples(2048) == 1000


# ---------------------------------------------------------------- Inception plumbing


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torch-fidelity InceptionV3 state dict saved with torch.save."""
    from support.tiny_models import build_random_inception

    return build_random_inception(tmp_path_factory.mktemp("inception") / "pt_inception-random.pth")


def test_inception_loads_weights_only_and_matches_torch_fidelity(random_inception: Path) -> None:
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from PIL import Image

    from erasekit.metrics.fid import inception_features, load_inception

    net = load_inception(random_inception)
    assert tfi.load_state_dict_from_url is not None and tfi.load_state_dict_from_url.__name__ == "load_state_dict_from_url"
    ims = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)) for i in range(3)]
    f = inception_features(net, ims, "cpu", batch_size=2)
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    # torch-fidelity's own constructor on the same file gives the same features
    ref = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(random_inception))
    x = torch.from_numpy(np.stack([np.asarray(im) for im in ims])).permute(0, 3, 1, 2)
    with torch.no_grad():
        g = ref(x)[0].double().numpy()
    np.testing.assert_allclose(f, g, rtol=1e-5, atol=1e-12)


def test_inception_weights_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from erasekit.metrics.fid import find_inception_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError, match=r"metrics\[0\]\.config\.inception_weights_path"):
        find_inception_weights(None, "metrics[0].config.inception_weights_path")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    cached.write_bytes(b"x")
    assert find_inception_weights(None, "f") == cached  # torch-fidelity's own download is found


class _Evil:
    def __reduce__(self):  # executed only by an unrestricted unpickler
        return (Path.touch, (Path(_Evil.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_inception_weights_are_never_unpickled_unsafely(tmp_path: Path) -> None:
    from erasekit.metrics.fid import load_inception

    _Evil.marker = str(tmp_path / "pwned")
    bad = tmp_path / "evil.pth"
    with bad.open("wb") as fh:
        pickle.dump({"Conv2d_1a_3x3.conv.weight": _Evil()}, fh)
    with pytest.raises(ModelNotFoundError, match="weights-only"):
        load_inception(bad, field="inception_weights_path")
    assert not (tmp_path / "pwned").exists()
    wrong = tmp_path / "wrong.pth"
    torch.save({"a": torch.zeros(1)}, wrong)
    with pytest.raises(ModelNotFoundError, match="not an FID InceptionV3"):
        load_inception(wrong)


def test_fid_metric_on_the_inception_path(tmp_path: Path, random_inception: Path) -> None:
    """The whole metric with the (random) Inception network: value = direct FID of its features."""
    from PIL import Image

    from erasekit.metrics.fid import inception_features, load_inception

    caps = tmp_path / "caps.csv"
    caps.write_text("caption\n" + "\n".join(f"a photo of a cat {i}" for i in range(3)) + "\n")
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    refs = [np.random.default_rng(100 + i).integers(0, 255, (48, 48, 3), dtype=np.uint8) for i in range(4)]
    for i, a in enumerate(refs):
        Image.fromarray(a).save(ref_dir / f"{i:03d}.png")
    run = run_config(tmp_path, "fid", {"limit": 3, "captions_path": str(caps), "reference_path": str(ref_dir),
                                       "inception_weights_path": str(random_inception), "allow_small_sample": True,
                                       "kid_subset_size": 2, "kid_subsets": 3}, model_id="dummy/sd-model")
    metric = metric_for(run)
    reqs = metric.requests()
    assert [r.seed for r in reqs] == [0, 1, 2]
    gen = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    images = serve(reqs, tmp_path / "imgs", lambda i, r: gen[i])
    res = metric.compute(images)
    net = load_inception(random_inception)
    f_gen = inception_features(net, [Image.fromarray(a) for a in gen], "cpu")
    f_ref = inception_features(net, [Image.fromarray(a) for a in refs], "cpu")
    assert res.value == pytest.approx(fid_from_features(f_gen, f_ref), rel=1e-6, abs=1e-12)
    d = res.details
    assert d["feature_extractor"]["name"] == "inception" and d["feature_extractor"]["dim"] == 2048
    assert len(d["feature_extractor"]["weights_sha256"]) == 64
    assert d["small_sample"] is True and d["min_samples"] == 1000 and d["kid_subset_size"] == 2
    assert len(res.records) == 3 and res.records[0]["cache_key"] == images[0].key


def test_fid_metric_refuses_a_real_run_without_inception_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    caps = tmp_path / "caps.csv"
    caps.write_text("caption\n" + "\n".join(f"c {i}" for i in range(1000)) + "\n")
    run = run_config(tmp_path, "fid", {"captions_path": str(caps)}, model_id="dummy/sd-model")
    with pytest.raises(ModelNotFoundError, match=r"metric\.config\.inception_weights_path"):
        metric_for(run).requests()  # before any image is generated


# ---------------------------------------------------------------- metric on a tiny CLIP extractor


@pytest.fixture(scope="module")
def clip_fid_setup(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> dict:
    """Captions, a reference folder of toy renders and shared cache (96-d features → minimum 96)."""
    from PIL import Image

    from erasekit.toyworld import render_batch

    root = tmp_path_factory.mktemp("fidclip")
    caps = root / "caps.csv"
    caps.write_text("prompt,seed\n" + "\n".join(f"a red circle,{i}" for i in range(100)) + "\n")
    ref = root / "ref"
    ref.mkdir()
    arrs, _, _, _ = render_batch(110, seed=7)
    for i, a in enumerate(arrs):
        Image.fromarray(a).save(ref / f"{i:04d}.png")
    gen_good, _, _, _ = render_batch(100, seed=8)
    rng = np.random.default_rng(0)
    gen_bad = rng.integers(0, 255, (100, 32, 32, 3), dtype=np.uint8)
    return {"root": root, "caps": caps, "ref": ref, "good": gen_good, "bad": gen_bad, "clip": tiny_clip_dir}


def _clip_fid(setup: dict, tmp: Path, images: np.ndarray, **extra) -> tuple:
    cfg = {"limit": 100, "captions_path": str(setup["caps"]), "reference_path": str(setup["ref"]),
           "feature_extractor": "clip", "clip_model": str(setup["clip"]), "kid_subsets": 5, "kid_subset_size": 50, **extra}
    run = run_config(tmp, "fid", cfg, model_id="dummy/sd-model")
    metric = metric_for(run)
    reqs = metric.requests()
    imgs = serve(reqs, tmp / "imgs", lambda i, r: images[i])
    return metric, metric.compute(imgs), imgs


def test_fid_metric_clip_features_value_cache_and_npz(clip_fid_setup: dict, tmp_path: Path) -> None:
    from erasekit.detectors.clip import ClipDetector

    s = clip_fid_setup
    metric, res, imgs = _clip_fid(s, tmp_path, s["good"])
    d = res.details
    assert d["reference"]["cached"] is False and Path(d["reference"]["cache_file"]).is_file()
    assert d["n_generated"] == 100 and d["n_reference"] == 110 and d["min_samples"] == 96 and d["small_sample"] is False
    # value = direct computation on the same features (fresh detector, features recomputed)
    det = ClipDetector(str(s["clip"]))
    from PIL import Image

    f_gen = det.image_features([im.image for im in imgs], kind="pooled").double().numpy()
    f_ref = det.image_features([Image.open(p).convert("RGB") for p in sorted(s["ref"].iterdir())], kind="pooled").double().numpy()
    assert res.value == pytest.approx(scipy_fid(f_gen, f_ref), abs=1e-3)
    assert d["kid"] is not None and d["kid_subset_size"] == 50
    # second metric instance: reference statistics come from the cache, same number
    _, res2, _ = _clip_fid(s, tmp_path, s["good"])
    assert res2.details["reference"]["cached"] is True and res2.value == pytest.approx(res.value, abs=1e-9)
    assert res2.details["kid"] == pytest.approx(d["kid"], abs=1e-9)
    # the cached .npz works as reference_path, and the recorded extractor is checked
    npz = Path(d["reference"]["cache_file"])
    _, res3, _ = _clip_fid(s, tmp_path / "npz", s["good"], reference_path=str(npz))
    assert res3.value == pytest.approx(res.value, abs=1e-9) and res3.details["reference"]["kind"] == "statistics file"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["extractor"] = "something-else"
    other = tmp_path / "other.npz"
    np.savez(other, **{**arrays, "meta": np.array(json.dumps(meta))})
    with pytest.raises(ErasekitError, match="computed with feature extractor"):
        _clip_fid(s, tmp_path / "other", s["good"], reference_path=str(other))
    # a worse image set scores worse
    _, bad, _ = _clip_fid(s, tmp_path / "bad", s["bad"])
    assert bad.value > res.value


def test_fid_refuses_small_samples(clip_fid_setup: dict, tmp_path: Path) -> None:
    s = clip_fid_setup
    base = {"captions_path": str(s["caps"]), "reference_path": str(s["ref"]), "feature_extractor": "clip",
            "clip_model": str(s["clip"])}
    # known up front from the CLIP folder's config.json: 50 < 96
    with pytest.raises(ConfigError, match=r"metric\.config\.limit.*minimum 96"):
        run_config(tmp_path, "fid", {**base, "limit": 50}, model_id="dummy/sd-model")
    with pytest.raises(ConfigError, match=r"reference_limit"):
        run_config(tmp_path, "fid", {**base, "limit": 100, "reference_limit": 20}, model_id="dummy/sd-model")
    # the captions file has fewer rows than limit: refused before generation
    short = tmp_path / "short.csv"
    short.write_text("prompt\n" + "\n".join(f"a {i}" for i in range(30)) + "\n")
    run = run_config(tmp_path, "fid", {**base, "limit": 200, "captions_path": str(short)}, model_id="dummy/sd-model")
    with pytest.raises(ErasekitError, match="30 generated images .* too few .*allow_small_sample"):
        metric_for(run).requests()
    # allowed on request, and marked in the details
    _, res, _ = _clip_fid(s, tmp_path / "small", s["good"][:40], limit=40, allow_small_sample=True)
    assert res.details["small_sample"] is True and np.isfinite(res.value)


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"kid_subsets": 0}, "kid_subsets"),
        ({"feature_extractor": "vgg"}, "feature_extractor"),
        ({"reference_path": "/nonexistent/ref"}, "reference_path"),
        ({"captions_path": "/nonexistent/caps.csv"}, "captions_path"),
        ({"inception_weights_path": "/nonexistent/w.pth"}, "inception_weights_path"),
        ({"feature_extractor": "inception", "clip_model": "openai/clip-vit-base-patch32"}, "clip_model"),
        ({"feature_extractor": "clip", "inception_weights_path": __file__}, "inception_weights_path"),
        ({"limit": 500}, "limit"),  # real model: 2048-d Inception → minimum 1000
        ({"allow_smal_sample": True}, "allow_smal_sample"),
    ],
)
def test_fid_config_validation(tmp_path: Path, cfg: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        run_config(tmp_path, "fid", cfg, model_id="dummy/sd-model")
    assert exc.value.path == f"metric.config.{field}"


def test_fid_spec_default_limit_is_accepted(tmp_path: Path) -> None:
    run = run_config(tmp_path, "fid", {"limit": 1000}, model_id="dummy/sd-model")
    assert run.metrics[0].config.limit == 1000
