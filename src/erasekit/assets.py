"""Is every model, dataset and weights file a run will read available offline? (no weights read)

``validate`` and ``run`` ask each metric (:meth:`erasekit.metrics.base.Metric.check_assets`)
before any model loads, so a missing CLIP, NudeNet, Inception file or I2P CSV is an exit-2 line
naming the config field and how to get the file — not a crash after the base model loaded and
a technique ran. ``erasekit validate --no-assets`` skips these checks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from erasekit.errors import ConfigError, ModelNotFoundError
from erasekit.models.loading import looks_like_local_path


def require_hf_model(model: str, field: str, what: str) -> None:
    """``model`` is ``toy``, a local folder with a config.json, or an HF id whose config.json is in
    the local HF cache."""
    if model == "toy":
        return
    p = Path(model).expanduser()
    if looks_like_local_path(model) or p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(field, f"{what} folder {model} has no config.json", "give a folder written by save_pretrained")
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id, an unreadable cache: not available either way
        cached = None
    if not isinstance(cached, str):
        raise ConfigError(field, f"{what} {model!r} is not in the local HF cache (erasekit never downloads)",
                          f"`huggingface-cli download {model}` on a machine with network, or a local folder")


def require_nudenet(field: str) -> None:
    if importlib.util.find_spec("nudenet") is None:
        raise ConfigError(field, "the NudeNet judge needs the nudenet package (its ONNX weights ship in the wheel)",
                          "pip install -e \".[nudenet]\"")


def require_i2p(field: str) -> None:
    """The I2P CSV in the local HF cache (used when no ``i2p_path`` is given on a real model)."""
    from erasekit.datasets.i2p import I2P_FILE, I2P_REPO, _cached_i2p_csv, _hub_offline

    if _cached_i2p_csv() is None and _hub_offline():
        raise ConfigError(field, f"no I2P prompts offline ({I2P_REPO} is not in the local HF cache)",
                          f"download {I2P_FILE} once and set i2p_path to it")


def require_inception(configured: str | None, field: str) -> None:
    from erasekit.models.inception import find_inception_weights

    try:
        find_inception_weights(configured, field)
    except ModelNotFoundError as err:
        raise ConfigError(field, "no FID Inception weights on this machine (torch hub cache or inception_weights_path)",
                          "download torch-fidelity's weights-inception-2015-12-05-6726825d.pth once and set "
                          "inception_weights_path") from err


def require_judge(name: str, config: object, world: object, path: str, default_clip: str) -> None:
    """The assets of the judge :func:`erasekit.detectors.select.judge_name` picked."""
    if name == "nudenet":
        require_nudenet(f"{path}.detector")
    elif name == "clip":
        require_hf_model(world.clip_model(getattr(config, "clip_model", None), default_clip),  # type: ignore[attr-defined]
                         f"{path}.clip_model", "CLIP model")
