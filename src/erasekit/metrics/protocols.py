"""Named evaluation protocols: what a metric's ``preset`` means, and what every number carries.

Why this module: a number next to a published table is only comparable if it was computed
the same way — same prompt set and N, same judge (model, version, threshold), same sampler,
same base model. Each metric declares its protocols as :class:`Protocol` objects
(``Metric.protocols``; one of them is ``Metric.default_protocol``); a protocol is a set of
config defaults plus a one-line source, so ``preset: clean-fid`` is exactly "the keys that
protocol fixes, unless the config sets them itself". After scoring, the runner attaches a
:func:`protocol_record` to the metric's entry in report.json (``protocol`` /
``base_protocol``) and a compact copy (:func:`brief`) to every records.jsonl row;
report.html and the CLI table show its :func:`headline` label (``FID-1k (torch-fidelity)``,
never a bare ``fid``), and ``erasekit compare`` ranks only runs whose
:func:`signature` agrees (:func:`mismatches`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erasekit.errors import ConfigError

#: the protocol fields that must agree for two numbers of one metric to be ranked together
SIGNATURE_FIELDS: tuple[str, ...] = ("preset", "n", "judge", "judge_version", "threshold", "sampler", "base_model")


@dataclass(frozen=True)
class Protocol:
    """One named evaluation protocol of a metric.

    ``settings`` are config values the protocol fixes (applied where the config does not set
    the key itself); ``n`` is the number of images the protocol scores (None: it fixes none);
    ``label`` is the metric's display name (``{n}`` → the images scored, ``1k`` style); the headline
    adds N, the protocol and the judge (:func:`headline`);
    ``differs`` says in one line how it differs from the metric's default protocol.
    """

    name: str
    source: str
    label: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None
    differs: str = ""

    def describe(self) -> str:
        return self.source if not self.differs else f"{self.source} — {self.differs}"


def short_count(n: int | None) -> str:
    """1000 → ``1k``, 30000 → ``30k``, 4703 → ``4703``, None → ``?``."""
    if n is None:
        return "?"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def protocol_of(cls: type, preset: str | None, path: str = "metric.config") -> Protocol:
    """The protocol ``preset`` names for metric class ``cls`` (None → its default); an unknown
    name is a ConfigError listing the valid ones."""
    protocols: dict[str, Protocol] = getattr(cls, "protocols", {}) or {}
    if not protocols:
        if preset is not None:
            raise ConfigError(f"{path}.preset", f"this metric has no named protocols (got {preset!r})", "remove preset")
        return Protocol(name="default", source="erasekit's definition (module docstring)", label=str(getattr(cls, "registry_name", "")))
    key = (preset or cls.default_protocol).strip().lower()
    if key not in protocols:
        raise ConfigError(f"{path}.preset", f"unknown preset {preset!r}", f"use one of {', '.join(protocols)}")
    return protocols[key]


def apply_protocol(cls: type, config: Any, path: str) -> Any:
    """``config`` with its protocol's settings filled in where the config left the key unset,
    and ``preset`` set to the protocol's name (so report.json and the run id say which)."""
    protocols = getattr(cls, "protocols", {}) or {}
    if not protocols:
        protocol_of(cls, getattr(config, "preset", None), path)
        return config
    proto = protocol_of(cls, config.preset, path)
    given = config.model_dump(exclude_unset=True)
    data = {**{k: v for k, v in proto.settings.items() if k not in config.model_fields_set}, **given, "preset": proto.name}
    for k, v in proto.settings.items():  # a nested block (``attack:``) the config sets in part: the rest from the protocol
        if isinstance(v, Mapping) and isinstance(given.get(k), Mapping):
            data[k] = {**v, **given[k]}
    return type(config).model_validate(data)


def overrides(cls: type, config: Any) -> dict[str, Any]:
    """Keys the config set to something other than its protocol fixes (shown next to the label)."""
    proto = protocol_of(cls, getattr(config, "preset", None))
    out = {}
    for k, v in proto.settings.items():
        have = getattr(config, k, None)
        if hasattr(have, "model_dump"):
            have = have.model_dump(mode="json")
            v = {**have, **v} if isinstance(v, dict) else v
        if have != v:
            out[k] = have
    return out


# ------------------------------------------------------------------ judges

@functools.lru_cache(maxsize=64)
def model_version(source: str | None) -> str | None:
    """A short identity of a model's weights: the HF snapshot commit when ``source`` lies in an
    HF cache (``…/snapshots/<sha>/``), else a digest of the folder or file; None if unknown."""
    if not source:
        return None
    m = re.search(r"snapshots/([0-9a-f]{8,})", str(source))
    if m:
        return m.group(1)[:12]
    p = Path(source)
    try:
        if p.is_dir():
            from erasekit.utils.hashing import folder_digest

            return folder_digest(p)[:12]
        if p.is_file():
            from erasekit.utils.hashing import sha256_file

            return sha256_file(p)[:12]
    except OSError:
        return None
    return None


def _one_judge(d: Mapping[str, Any]) -> dict[str, Any]:
    model = d.get("model") or d.get("vqa") or d.get("detector") or d.get("name")
    version = d.get("nudenet_version")
    version = f"nudenet {version}" if version else model_version(d.get("source") or (model if isinstance(model, str) else None))
    out = {"judge": f"{d.get('detector') or d.get('vqa') or d.get('name')}:{model}", "judge_version": version}
    if d.get("threshold") is not None:
        out["threshold"] = d["threshold"]
    if d.get("preset"):
        out["judge_protocol"] = d["preset"]
    return out


def judge_of(details: Mapping[str, Any]) -> dict[str, Any]:
    """Judge model, version and threshold from a metric's details (``detector`` of one judge or a
    ``{role: judge}`` map, ``vqa``, ``clip_model``/``clip_source``, ``feature_extractor``)."""
    det = details.get("detector")
    if isinstance(det, Mapping) and det and all(isinstance(v, Mapping) for v in det.values()):
        parts = {role: _one_judge(v) for role, v in det.items()}
        return {
            "judge": "; ".join(f"{r}={p['judge']}" for r, p in parts.items()),
            "judge_version": "; ".join(f"{r}={p['judge_version']}" for r, p in parts.items()),
            "threshold": "; ".join(f"{r}={p.get('threshold')}" for r, p in parts.items()),
        }
    if isinstance(det, Mapping):
        return _one_judge(det)
    if isinstance(details.get("vqa"), Mapping):
        return _one_judge(details["vqa"])
    fe = details.get("feature_extractor")
    if isinstance(fe, Mapping):
        return {"judge": f"{fe.get('name')}:{fe.get('model') or fe.get('weights') or fe.get('id')}",
                "judge_version": model_version(fe.get("source")) or fe.get("id")}
    if details.get("clip_model"):
        return {"judge": f"clip:{details['clip_model']}", "judge_version": model_version(details.get("clip_source"))}
    return {"judge": None, "judge_version": None}


# ------------------------------------------------------------------ the record

def protocol_record(cls: type, config: Any, details: Mapping[str, Any], n_images: int, sampler: Mapping[str, Any],
                    base_model: Mapping[str, Any]) -> dict[str, Any]:
    """What a headline number was computed under (report.json ``metrics.<key>.protocol``)."""
    proto = protocol_of(cls, getattr(config, "preset", None))
    rec: dict[str, Any] = {
        "preset": proto.name,
        "source": proto.source,
        "n": int(n_images),
        "protocol_n": proto.n,
        "below_protocol_n": proto.n is not None and n_images < proto.n,
        "judge": None,
        "judge_version": None,
        "threshold": None,
        **judge_of(details),
        "sampler": {k: sampler.get(k) for k in ("scheduler", "num_inference_steps", "guidance_scale", "height", "width")},
        "base_model": {k: base_model.get(k) for k in ("id", "base_fingerprint")},
        "overrides": overrides(cls, config),
    }
    rec["label"] = headline(cls, rec, proto)
    return rec


def judge_short(judge: str | None) -> str:
    """``clip:openai/clip-vit-base-patch32`` → ``clip:clip-vit-base-patch32``; ``nudenet:…`` → ``nudenet``;
    several roles (``target=…; retain=…``) → their kinds joined by ``+``."""
    if not judge:
        return "?"
    parts = [p.split("=", 1)[-1] for p in str(judge).split("; ")]
    out: list[str] = []
    for p in parts:
        kind, _, model = p.partition(":")
        short = f"{kind}:{model.rstrip('/').rsplit('/', 1)[-1]}" if kind in ("clip", "blip_vqa", "vqa") and model else kind
        if short not in out:
            out.append(short)
    return "+".join(out)


def headline(cls: type, rec: Mapping[str, Any], proto: Protocol | None = None) -> str:
    """``FID-1k (1000 img, standard, inception)``; ``… [below protocol N: 64 < 30k]``; ``… +overrides``."""
    proto = proto or protocol_of(cls, rec.get("preset"))
    name = proto.label.format(n=short_count(rec.get("n")))
    label = f"{name} ({rec.get('n')} img, {proto.name}, {judge_short(rec.get('judge'))})"
    if rec.get("overrides"):
        label += " +" + ",".join(sorted(rec["overrides"]))
    if rec.get("below_protocol_n"):
        label += f" [below protocol N: {rec.get('n')} < {short_count(rec.get('protocol_n'))}]"
    return label


def brief(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The per-image copy written into records.jsonl rows."""
    if not rec:
        return None
    s = rec.get("sampler") or {}
    b = rec.get("base_model") or {}
    return {
        "preset": rec.get("preset"),
        "label": rec.get("label"),
        "n": rec.get("n"),
        "judge": rec.get("judge"),
        "judge_version": rec.get("judge_version"),
        "threshold": rec.get("threshold"),
        "sampler": f"{s.get('scheduler')} {s.get('num_inference_steps')} steps, guidance {s.get('guidance_scale')}, "
                   f"{s.get('width')}x{s.get('height')}",
        "base_model": f"{b.get('id')}@{b.get('base_fingerprint')}",
    }


def signature(rec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields two runs of one metric must share to be ranked together (``SIGNATURE_FIELDS``)."""
    rec = rec or {}
    return {k: rec.get(k) for k in SIGNATURE_FIELDS}


def mismatches(records: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """The signature fields on which ``{run: protocol record}`` disagree, with each run's value
    (``"n: a=1000, b=500"``); a run without a record differs on ``protocol``."""
    missing = [r for r, rec in records.items() if not rec]
    if missing and len(missing) < len(records):
        return [f"protocol: not recorded for {', '.join(missing)} (report written by an older erasekit)"]
    sigs = {r: signature(rec) for r, rec in records.items() if rec}
    out = []
    for k in SIGNATURE_FIELDS:
        vals = {r: s[k] for r, s in sigs.items()}
        if len({repr(v) for v in vals.values()}) > 1:
            out.append(f"{k}: " + ", ".join(f"{r}={_short(v)}" for r, v in vals.items()))
    return out


def _short(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}={v[k]}" for k in v) + "}"
    return str(v)


def nudenet_judge_protocols(label: str, n: int | None = None) -> dict[str, Protocol]:
    """The protocols of a metric whose only protocol choice is the nudity judge: one per NudeNet
    preset of :mod:`erasekit.detectors.presets` (``eval-unlearn`` first: the default)."""
    from erasekit.detectors.presets import NUDENET_PRESETS

    order = ["eval-unlearn", *[k for k in NUDENET_PRESETS if k not in ("eval-unlearn", "eval-unlearn-err")]]
    return {
        k: Protocol(k, f"NudeNet judge: {NUDENET_PRESETS[k].source}", label, {"nudenet_preset": k}, n=n,
                    differs="" if k == "eval-unlearn" else "the NudeNet class set and threshold")
        for k in order
    }
