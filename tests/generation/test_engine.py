"""ImageGenerator: each unique image once, batch/order invariance, guidance grouping, shards."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from PIL import Image
from support.tiny_models import GUIDANCE, STEPS

from erasekit.generation import ImageRequest, image_seed, sampler_settings

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle", "cross")


def _prompts():
    return [f"a {c} {s}" for s in SHAPES for c in COLOURS]


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


class CallSpy:
    """Counts pipe calls and their batch sizes; forwards everything to the real pipe."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []
        self.scheduler, self.unet = pipe.scheduler, pipe.unet

    def __call__(self, **kw):
        self.calls.append((len(kw["prompt"]), kw["guidance_scale"]))
        return self.pipe(**kw)


def test_two_metrics_sharing_half_generate_each_unique_image_once(make_generator, tmp_path):
    prompts = _prompts()[:9]
    metric_a = [ImageRequest(p, seed=i) for i, p in enumerate(prompts[:6])]
    metric_b = [ImageRequest(p, seed=i + 3) for i, p in enumerate(prompts[3:])]  # shares prompts[3:6] seeds 3..5
    assert len(set(metric_a) & set(metric_b)) == 3
    requests = metric_a + metric_b
    gen = make_generator(batch_size=4)
    unique, missing = gen.plan(requests)
    assert len(unique) == len(missing) == 9

    images, stats = gen.generate(requests)
    assert (stats.requested, stats.unique, stats.generated, stats.reused) == (12, 9, 9, 0)
    assert [im.request for im in images] == requests
    assert len({im.key for im in images}) == 9
    # duplicates share one file
    assert images[3].path == images[6].path and images[3].key == images[6].key
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 9

    # a second run generates nothing and serves identical images
    gen2 = make_generator(batch_size=4)
    assert gen2.plan(requests)[1] == []
    images2, stats2 = gen2.generate(requests)
    assert (stats2.requested, stats2.unique, stats2.generated, stats2.reused) == (12, 9, 0, 9)
    assert all(im.reused for im in images2) and not any(im.reused for im in images)
    assert [(i.key, i.path) for i in images2] == [(i.key, i.path) for i in images]
    for a, b in zip(images, images2, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_batch_size_1_and_8_differ_by_at_most_one_level_under_their_own_keys(make_generator, tmp_path):
    """Tolerance: at most 1 grey level, on at most 0.1% of the values — and because that is not
    zero, the batch size is part of the cache key (two batch sizes never share a cached image).

    Measured on CPU (torch 2.14, 1 thread): here (tiny model, 17 images) the PNGs are
    byte-identical. Before quantisation the float outputs differ by up to ~7e-7 between
    batch sizes (oneDNN picks other kernels per shape), so a value that lands on a
    rounding boundary flips by one level: on the trained toy model (32×32, 20 steps,
    128 images) 116/128 PNGs were identical vs batch 8, max difference 1, 27 of 393,216
    values (7e-5) differed. Per-image generators make the *noise* batch-independent;
    bitwise equality of the UNet's math across batch shapes is not something CPU or
    GPU kernels promise. The cache makes it moot within a cache: an image is generated once."""
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts())]
    requests.append(ImageRequest("a shape", seed=99, negative_prompt="a red circle"))
    one, _ = make_generator(tmp_path / "b1", batch_size=1).generate(requests)
    eight, _ = make_generator(tmp_path / "b8", batch_size=8).generate(requests)
    diffs, exact = [], 0
    for a, b in zip(one, eight, strict=True):
        assert a.key != b.key
        d = np.abs(_pixels(a.path) - _pixels(b.path))
        diffs.append(d)
        exact += a.path.read_bytes() == b.path.read_bytes()
    d = np.stack(diffs)
    assert d.max() <= 1 and (d > 0).mean() <= 1e-3, f"max {d.max()}, {(d > 0).mean():.2e} of values differ"
    # images are not trivially equal to each other (the check above would be vacuous)
    assert np.abs(_pixels(one[0].path) - _pixels(one[1].path)).max() > 10
    print(f"batch 1 vs 8: {exact}/{len(one)} PNGs byte-identical, max pixel diff {d.max()}")


def test_order_does_not_matter(make_generator, tmp_path):
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts()[:10])]
    shuffled = requests[:]
    random.Random(3).shuffle(shuffled)
    a, _ = make_generator(tmp_path / "a", batch_size=4).generate(requests)
    b, _ = make_generator(tmp_path / "b", batch_size=4).generate(shuffled)
    by_key = {im.key: im for im in b}
    assert set(by_key) == {im.key for im in a}
    for im in a:
        assert np.abs(_pixels(im.path) - _pixels(by_key[im.key].path)).max() <= 1


def test_seed_determines_the_image(make_generator):
    gen = make_generator()
    images, _ = gen.generate([ImageRequest("a red circle", seed=s) for s in (1, 1, 2)])
    assert images[0].path == images[1].path
    assert np.abs(_pixels(images[0].path) - _pixels(images[2].path)).max() > 10


def test_run_seed_changes_images_and_zero_keeps_request_seed(make_generator, tmp_path):
    req = [ImageRequest("a red circle", seed=5)]
    base, _ = make_generator(tmp_path / "r0", run_seed=0).generate(req)
    other, _ = make_generator(tmp_path / "r1", run_seed=1).generate(req)
    assert base[0].key != other[0].key
    assert np.abs(_pixels(base[0].path) - _pixels(other[0].path)).max() > 10
    # run seed 1 with request seed s is the image of run seed 0 with seed image_seed(1, s)
    same, _ = make_generator(tmp_path / "r0", run_seed=0).generate([ImageRequest("a red circle", seed=image_seed(1, 5))])
    assert np.array_equal(_pixels(same[0].path), _pixels(other[0].path))


def test_per_request_guidance_batches_by_guidance(tiny_pipe, make_generator):
    """I2P rows carry their own guidance: honoured, and each pipe call has one guidance."""
    spy = CallSpy(tiny_pipe)
    sampler = sampler_settings(tiny_pipe, STEPS, GUIDANCE)
    gen = make_generator(batch_size=4, sampler=sampler)
    gen.pipe = spy
    requests = [ImageRequest(f"row {i}", seed=i, guidance_scale=(7.0 if i % 2 else None)) for i in range(10)]
    images, stats = gen.generate(requests)
    assert stats.generated == 10
    # every call is padded to batch_size (images then do not depend on how work was split)
    assert sorted(spy.calls) == sorted([(4, GUIDANCE), (4, GUIDANCE), (4, 7.0), (4, 7.0)])
    # the guidance really reached the sampler: same prompt+seed at 7.0 vs default differ
    a, _ = gen.generate([ImageRequest("row 1", seed=1)])
    assert a[0].key != images[1].key
    assert np.abs(_pixels(a[0].path) - _pixels(images[1].path)).max() > 0
    assert gen.sampler.guidance_scale == GUIDANCE
    # explicit guidance equal to the default is the same image (no regeneration)
    again, st = gen.generate([dataclasses.replace(requests[0], guidance_scale=GUIDANCE)])
    assert st.generated == 0 and again[0].key == images[0].key


def test_corrupt_cached_image_is_regenerated_identically(make_generator):
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts()[:4])]
    images, _ = make_generator().generate(requests)
    original = images[2].path.read_bytes()
    images[2].path.write_bytes(original[: len(original) // 3])
    images2, stats = make_generator().generate(requests)
    assert (stats.generated, stats.reused) == (1, 3)
    assert images2[2].path.read_bytes() == original


def test_shards_split_the_missing_work(make_generator):
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts()[:7])]
    requests += requests[:2]  # duplicates must not be generated twice across ranks
    done = []
    for rank in range(3):
        _, st = make_generator(shard=(rank, 3), batch_size=2).generate(requests)
        done.append(st.generated)
    # unique[rank::3] of 7: ranks that plan after others wrote images still take only their share
    assert done == [3, 2, 2]
    _, st = make_generator(batch_size=2).generate(requests)
    assert (st.unique, st.generated, st.reused) == (7, 0, 7)


def test_shard_reports_pending_for_other_ranks(make_generator):
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts()[:5])]
    images, st = make_generator(shard=(1, 2)).generate(requests)
    assert (st.generated, st.pending, st.reused) == (2, 3, 0)
    assert sum(im.path.exists() for im in images) == 2


def test_sampler_must_describe_the_pipe(tiny_pipe, make_generator):
    s = sampler_settings(tiny_pipe, STEPS, GUIDANCE)
    assert (s.height, s.width, s.scheduler, s.dtype) == (16, 16, "DDIMScheduler", "float32")
    with pytest.raises(ValueError, match="scheduler"):
        make_generator(sampler=dataclasses.replace(s, scheduler="PNDMScheduler"))
    with pytest.raises(ValueError, match="dtype"):
        make_generator(sampler=dataclasses.replace(s, dtype="float16"))
    with pytest.raises(ValueError):
        make_generator(batch_size=0)
    with pytest.raises(ValueError):
        make_generator(shard=(2, 2))


def test_empty_request_list(make_generator):
    images, stats = make_generator().generate([])
    assert images == [] and (stats.requested, stats.unique, stats.generated, stats.reused) == (0, 0, 0, 0)


def test_sharded_and_resumed_images_are_bit_identical_to_a_single_pass(make_generator, tmp_path):
    """Every pipe call is padded to batch_size, so how the work was split never changes a pixel."""
    requests = [ImageRequest(p, seed=i) for i, p in enumerate(_prompts()[:7])]
    single, _ = make_generator(cache_dir=tmp_path / "single", batch_size=4).generate(requests)
    for rank in range(2):  # two "ranks" into one cache, then collect
        make_generator(cache_dir=tmp_path / "sharded", batch_size=4, shard=(rank, 2)).generate(requests)
    sharded, st = make_generator(cache_dir=tmp_path / "sharded", batch_size=4).generate(requests)
    assert st.generated == 0
    # a resumed run: the first three images already cached, the rest made in a different split
    make_generator(cache_dir=tmp_path / "resumed", batch_size=4).generate(requests[:3])
    resumed, _ = make_generator(cache_dir=tmp_path / "resumed", batch_size=4).generate(requests)
    for a, b, c in zip(single, sharded, resumed, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes() == c.path.read_bytes()
