"""DetectorPool: each detector loaded once per run, shared by every metric.

Why: a run with asr_i2p + ua_ira + clip_score would otherwise load the same
1.7 GB CLIP three times. The runner creates one pool per run and puts it in
``MetricContext.detectors``; metrics call ``ctx.detectors.get(name, **params)``.

Identity: ``(canonical name, device, all parameters with their defaults
filled in)``. ``get("nudenet")`` and ``get("nudenet", preset="mace")`` are the
same object. Detectors that differ only in decision parameters (threshold,
preset, captions) but agree on the parameters naming their weights
(``weight_params``, e.g. ``clip_model``) share the loaded model through
``derive()`` instead of loading it again.
"""

from __future__ import annotations

import inspect
import json
import threading
from typing import Any

from erasekit.errors import ErasekitError
from erasekit.registry import DETECTORS

# Parameters that never change what a detector computes: excluded from its identity.
_NON_IDENTITY = ("field",)


class DetectorPool:
    """Lazily built, shared detectors for one run.

    ``device``: where models run unless a ``get`` call passes its own ``device``
    ("auto" → cuda if available, else mps, else cpu).

    Names (``erasekit.registry.DETECTORS``): ``nudenet`` (:class:`NudeNetDetector`),
    ``clip`` (:class:`ClipDetector`), ``toy_judge`` (:class:`ToyJudgeDetector`),
    ``vqa`` (BLIP-VQA, or the toy VQA with ``vqa_model="toy"``), ``toy_vqa``.
    ``field`` (the config path to blame in a missing-model error) may be passed and
    is not part of the identity. A parameter given as None counts as not given (its
    default applies), so metrics can pass optional config fields straight through.
    """

    def __init__(self, device: str = "auto") -> None:
        self.device = _resolve(device)
        self._items: dict[tuple[str, str, str], Any] = {}
        self._params: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.RLock()  # the scoring thread (overlap) and the main thread may ask at once

    def get(self, name: str, **params: Any) -> Any:
        """The detector ``name`` built with ``params`` (built on first request, then shared)."""
        canon = DETECTORS.canonical(name)
        if canon is None:
            hint = DETECTORS.suggest(name)
            raise ErasekitError(
                f"unknown detector {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                + f" (known: {', '.join(DETECTORS.names())})"
            )
        factory = DETECTORS.get(canon)
        device = _resolve(params.pop("device", None) or self.device)
        field = params.pop("field", None)
        params = {k: v for k, v in params.items() if v is not None}  # None = "not given": the default
        full = _bind(factory, params)
        ident = {k: v for k, v in full.items() if k not in _NON_IDENTITY and k != "device"}
        key = (canon, device, json.dumps(ident, sort_keys=True, default=_jsonable))
        with self._lock:
            if key not in self._items:
                self._items[key] = self._build(canon, factory, device, field, params, ident)
                self._params[key] = ident
            return self._items[key]

    def _build(self, canon: str, factory: Any, device: str, field: str | None, params: dict[str, Any], ident: dict[str, Any]) -> Any:
        weight_params = getattr(factory, "weight_params", None)
        if weight_params is not None:
            for (n, d, _), obj in self._items.items():
                if n == canon and d == device and hasattr(obj, "derive"):
                    other = self._params[(n, d, _)]
                    if all(other.get(w) == ident.get(w) for w in weight_params):
                        rest = {k: v for k, v in params.items() if k not in weight_params}
                        return obj.derive(**rest)
        kwargs = dict(params)
        sig = _signature(factory)
        if sig is not None and "device" in sig.parameters:
            kwargs["device"] = device
        if field is not None and sig is not None and "field" in sig.parameters:
            kwargs["field"] = field
        return factory(**kwargs)

    def loaded(self) -> list[dict[str, Any]]:
        """What this pool built: name, device, parameters and protocol (for the report)."""
        out = []
        for (name, device, _), obj in self._items.items():
            proto = obj.protocol() if hasattr(obj, "protocol") else {}
            row = {"name": name, "device": device, "protocol": proto}
            if hasattr(obj, "throughput"):
                row["throughput"] = obj.throughput()
            out.append(row)
        return out

    def clear(self) -> None:
        """Drop every detector (frees GPU memory once nothing else holds them)."""
        self._items.clear()
        self._params.clear()

    def __len__(self) -> int:
        return len(self._items)


def _resolve(device: str) -> str:
    from erasekit.models.loading import resolve_device

    return resolve_device(device)


def _signature(factory: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _bind(factory: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with defaults filled in (TypeError → a clear error naming the bad parameter)."""
    sig = _signature(factory)
    if sig is None:
        return dict(params)
    try:
        bound = sig.bind_partial(**params)
    except TypeError as exc:
        raise ErasekitError(f"bad parameters for detector {getattr(factory, 'name', factory)}: {exc}") from None
    bound.apply_defaults()
    out = dict(bound.arguments)
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD and p.name in out:
            out.update(out.pop(p.name))
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, tuple):
        return list(v)
    return str(v)
