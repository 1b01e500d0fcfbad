"""ImageCache: keys name exactly what determines the pixels; reads never trust a bad file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from erasekit.generation import ImageCache, ImageRequest, SamplerSettings, image_seed

SAMPLER = SamplerSettings(num_inference_steps=20, guidance_scale=4.0, height=32, width=32)
REQ = ImageRequest("a red circle", seed=7)


def _img(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_key_is_stable_sha256():
    k = ImageCache.key("fp", REQ, SAMPLER, 0)
    assert k == ImageCache.key("fp", ImageRequest("a red circle", seed=7), SAMPLER, 0)
    assert len(k) == 64 and int(k, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        lambda f, r, s, rs: ("fp2", r, s, rs),
        lambda f, r, s, rs: (f, dataclasses.replace(r, prompt="a red square"), s, rs),
        lambda f, r, s, rs: (f, dataclasses.replace(r, negative_prompt="blurry"), s, rs),
        lambda f, r, s, rs: (f, dataclasses.replace(r, seed=8), s, rs),
        lambda f, r, s, rs: (f, dataclasses.replace(r, guidance_scale=7.5), s, rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, num_inference_steps=21), rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, guidance_scale=4.5), rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, height=64), rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, width=64), rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, scheduler="PNDMScheduler"), rs),
        lambda f, r, s, rs: (f, r, dataclasses.replace(s, dtype="float16"), rs),
        lambda f, r, s, rs: (f, r, s, 1),
    ],
)
def test_every_pixel_determining_input_changes_the_key(change):
    assert ImageCache.key(*change("fp", REQ, SAMPLER, 0)) != ImageCache.key("fp", REQ, SAMPLER, 0)


def test_explicit_guidance_equal_to_default_is_the_same_image():
    # An I2P row whose guidance equals the technique's asks for the same pixels.
    assert ImageCache.key("fp", dataclasses.replace(REQ, guidance_scale=4.0), SAMPLER, 0) == ImageCache.key("fp", REQ, SAMPLER, 0)


def test_image_seed_contract():
    assert image_seed(0, 1234) == 1234  # run seed 0: the request seed itself (I2P sd_seed reproduces)
    assert image_seed(0, 2**40 + 3) == 2**40 + 3
    s = image_seed(5, 1234)
    assert s == image_seed(5, 1234) and 0 <= s < 2**63
    assert s != image_seed(6, 1234) and s != image_seed(5, 1235) and s != 1234
    # pinned: the derivation must never change silently (it would orphan every cache)
    assert image_seed(1, 0) == 0x0DC6760017047F11
    import hashlib

    digest = hashlib.sha256(b"erasekit-image-seed:12:34").digest()
    assert image_seed(12, 34) == int.from_bytes(digest[:8], "big") & (2**63 - 1)


def test_put_get_roundtrip(tmp_path):
    cache = ImageCache(tmp_path)
    key = ImageCache.key("fp", REQ, SAMPLER, 0)
    assert cache.get(key) is None
    img = _img()
    path = cache.put(key, img, {"prompt": REQ.prompt})
    assert cache.get(key) == path == cache.path(key)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(img))
    meta = cache.meta(key)
    assert meta["key"] == key and meta["prompt"] == REQ.prompt and (meta["width"], meta["height"]) == (32, 32)
    assert not list(tmp_path.rglob("*.tmp"))
    # same pixels -> same bytes (no timestamps in the PNG)
    data = path.read_bytes()
    cache.put(key, img, {"prompt": "again"})
    assert path.read_bytes() == data


def _corrupt_truncate(cache, key):
    p = cache.path(key)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _corrupt_flip_byte(cache, key):
    p = cache.path(key)
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _corrupt_other_valid_png(cache, key):
    _img(1).save(cache.path(key))  # decodes fine, but is not the image the sidecar describes


def _corrupt_no_sidecar(cache, key):
    cache.sidecar_path(key).unlink()


def _corrupt_garbage_sidecar(cache, key):
    cache.sidecar_path(key).write_text("{not json")


def _corrupt_wrong_key_sidecar(cache, key):
    s = cache.sidecar_path(key)
    s.write_text(s.read_text().replace(key, "0" * 64))


def _corrupt_empty_png(cache, key):
    cache.path(key).write_bytes(b"")


def _corrupt_png_missing(cache, key):
    cache.path(key).unlink()


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncate,
        _corrupt_flip_byte,
        _corrupt_other_valid_png,
        _corrupt_no_sidecar,
        _corrupt_garbage_sidecar,
        _corrupt_wrong_key_sidecar,
        _corrupt_empty_png,
        _corrupt_png_missing,
    ],
)
def test_corrupt_entries_are_deleted_never_trusted(tmp_path, corrupt):
    cache = ImageCache(tmp_path)
    key = ImageCache.key("fp", REQ, SAMPLER, 0)
    cache.put(key, _img(), {})
    corrupt(cache, key)
    assert cache.get(key) is None
    assert not cache.sidecar_path(key).exists()
    # a bad entry is deleted; an uncommitted PNG (no sidecar) is a miss but left alone, since a
    # live writer on another rank may be between its two renames (it is overwritten on regeneration)
    assert cache.path(key).exists() == (corrupt is _corrupt_no_sidecar)
    # and the slot is usable again
    cache.put(key, _img(), {})
    assert cache.get(key) is not None


def test_truncated_png_with_matching_sidecar_hash_still_fails_decode(tmp_path):
    """Belt and braces: even if the sidecar hash were rewritten, a truncated PNG must not decode."""
    import hashlib
    import json

    cache = ImageCache(tmp_path)
    key = ImageCache.key("fp", REQ, SAMPLER, 0)
    cache.put(key, _img(), {})
    p, s = cache.path(key), cache.sidecar_path(key)
    p.write_bytes(p.read_bytes()[:-30])
    meta = json.loads(s.read_text())
    meta["png_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    s.write_text(json.dumps(meta))
    assert cache.get(key) is None and not p.exists()


def test_sweep_tmp_removes_dead_writers_only(tmp_path):
    cache = ImageCache(tmp_path)
    key = ImageCache.key("fp", REQ, SAMPLER, 0)
    cache.put(key, _img(), {})
    folder = cache.path(key).parent
    from erasekit.utils.atomic_io import HOST as _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = folder / f".{key}.png.{_HOST}.{dead_pid}.abcd1234.tmp"
    live = folder / f".{key}.png.{_HOST}.{os.getpid()}.abcd1234.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"partial")
    assert cache.sweep_tmp() == 1
    assert not stale.exists() and live.exists()
    old = os.path.getmtime(live) - 7200
    os.utime(live, (old, old))
    assert cache.sweep_tmp(max_age_s=3600) == 1 and not live.exists()
    assert cache.get(key) is not None  # real entries untouched


def test_bad_key_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        ImageCache(tmp_path).path("../../etc/passwd")
