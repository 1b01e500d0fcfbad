"""DetectorPool: registry names, identity of (name, params), errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasekit.detectors import DetectorPool, ToyJudgeDetector
from erasekit.errors import ErasekitError
from erasekit.registry import DETECTORS


def test_registered_names() -> None:
    assert {"nudenet", "clip", "toy_judge", "vqa", "toy_vqa"} <= set(DETECTORS.names())


def test_unknown_detector_suggests() -> None:
    pool = DetectorPool("cpu")
    with pytest.raises(ErasekitError, match="did you mean 'nudenet'"):
        pool.get("nudnet")


def test_bad_parameter_is_one_clear_error(random_judge_dir: Path) -> None:
    pool = DetectorPool("cpu")
    with pytest.raises(ErasekitError, match="bad parameters for detector toy_judge"):
        pool.get("toy_judge", judge_path=str(random_judge_dir), colour_threshold=0.3)


def test_identity_and_report(random_judge_dir: Path) -> None:
    pool = DetectorPool("auto")
    assert pool.device == "cpu"  # no accelerator on the test machine
    a = pool.get("toy_judge", judge_path=str(random_judge_dir), field="metrics[0].config.detector")
    assert isinstance(a, ToyJudgeDetector)
    assert pool.get("toy_judge", judge_path=str(random_judge_dir), device="cpu") is a  # field / same device: same
    rows = pool.loaded()
    assert rows == [{"name": "toy_judge", "device": "cpu", "protocol": a.protocol(),
                     "throughput": {"images": 0, "padded": 0, "seconds": 0.0, "images_per_s": 0.0}}]  # nothing judged yet
    pool.clear()
    assert len(pool) == 0
    assert pool.get("toy_judge", judge_path=str(random_judge_dir)) is not a
