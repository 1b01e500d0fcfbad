"""An interrupted generation keeps every finished batch and resumes to the uninterrupted result.

In process (fast): the pipe raises on its n-th call. The SIGKILL-at-a-random-point
version goes through `erasekit run` in a subprocess: tests/runner/test_run_dedup_and_resume.py (slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _committed(cache_dir: Path) -> int:
    return len(list(cache_dir.glob("images/*/*.json"))) if cache_dir.exists() else 0


class Interrupting:
    """Forwards to the real pipe, raises KeyboardInterrupt on call number ``n`` (1-based)."""

    def __init__(self, pipe, n: int):
        self.pipe, self.n, self.calls = pipe, n, 0
        self.scheduler, self.unet = pipe.scheduler, pipe.unet

    def __call__(self, **kw):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.pipe(**kw)


def test_interrupted_generation_keeps_finished_batches_and_resumes(tiny_pipe, make_generator, tmp_path):
    from erasekit.generation import ImageRequest

    requests = [ImageRequest(f"prompt {i}", seed=i) for i in range(10)]
    gen = make_generator(tmp_path / "cache", batch_size=3)
    gen.pipe = Interrupting(tiny_pipe, n=3)
    with pytest.raises(KeyboardInterrupt):
        gen.generate(requests)
    assert _committed(tmp_path / "cache") == 6  # two finished batches were committed at once
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    resumed, st = make_generator(tmp_path / "cache", batch_size=3).generate(requests)
    assert (st.reused, st.generated) == (6, 4)
    ref, _ = make_generator(tmp_path / "ref", batch_size=3).generate(requests)
    assert [i.key for i in resumed] == [i.key for i in ref]
    for a, b in zip(resumed, ref, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
