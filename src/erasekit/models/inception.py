"""The standard FID network: torch-fidelity's TF-compatible InceptionV3, loaded without pickle.

Why here (not in the FID metric): KID, FID and any future distribution metric share one
feature network, one weights lookup and one safe loader. The weights file is read with
``torch.load(weights_only=True)`` (torch-fidelity itself would unpickle it) and its sha256
is part of every statistics cache key.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from erasekit.errors import ModelNotFoundError
from erasekit.utils.hashing import sha256_file

INCEPTION_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_DIM = 2048

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


RESIZES = ("torch-fidelity", "clean")


def clean_resize(image: Any, size: int = 299) -> np.ndarray:
    """clean-fid's "clean" resize: each channel of the uint8 RGB image as a float32 PIL image,
    PIL bicubic (with its antialiasing) to ``size``², clipped to [0, 255], never re-quantised."""
    from PIL import Image

    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    chans = [np.asarray(Image.fromarray(arr[:, :, c].astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))
             for c in range(3)]
    return np.clip(np.stack(chans, axis=2), 0, 255).astype(np.float32)


def inception_features(net: Any, images: list[Any], device: str, batch_size: int = 32, resize: str = "torch-fidelity") -> np.ndarray:
    """[N, 2048] float64 pool features of RGB PIL images.

    ``resize``: ``torch-fidelity`` (uint8 in, its TF1 bilinear resize inside the network) or
    ``clean`` (:func:`clean_resize` first; the network's own 299 → 299 resize is then the
    identity, checked in the tests, so it sees clean-fid's float input unchanged).
    """
    import torch

    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}; expected one of {RESIZES}")
    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            if resize == "clean":
                x = torch.from_numpy(np.stack([clean_resize(im) for im in images[i : i + batch_size]])).permute(0, 3, 1, 2)
                out.append(_float_forward(net, x.contiguous().to(device)).double().cpu().numpy())
                continue
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


def _float_forward(net: Any, x: Any) -> Any:
    """torch-fidelity's network on float input already at 299×299 (it accepts only uint8:
    its dtype check is lifted for this call only, under a lock)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with _LOCK:
        original = tfi.vassert
        tfi.vassert = lambda cond, msg: None if cond or "uint8" in str(msg) else original(cond, msg)
        try:
            return net(x)[0]
        finally:
            tfi.vassert = original
