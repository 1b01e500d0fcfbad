"""The contract every registered metric keeps, checked on each one (no metric is special-cased).

A new metric module gets these checks for free: declared direction and group, a config
that round-trips, deterministic requests, a finite value with details and one record per
image on the toy world, a clean error (not a crash) when handed the wrong images, and no
import of another metric module.
"""

from __future__ import annotations

import ast
import json
import math
import typing
from pathlib import Path

import pytest

import erasekit.metrics as metrics_pkg
import erasekit.techniques as techniques_pkg
from erasekit.config import resolve_config
from erasekit.errors import ErasekitError
from erasekit.metrics.base import GROUPS, Metric, MetricContext
from erasekit.metrics.fields import CANONICAL_KEYS, ConceptFields, ImagesFields, JudgeFields
from erasekit.registry import METRICS, TECHNIQUES, load_builtins
from erasekit.runner import run as run_pipeline
from erasekit.toyworld import PIPELINE_DIR

load_builtins()
NAMES = METRICS.names()
pytestmark = pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped")


def _config(tmp: Path, metrics: list[dict]) -> dict:
    return {
        "output_dir": str(tmp / "out"),
        "batch_size": 16,
        "technique": {"name": "mace", "config": {"model_id": "toy", "erase_concept": ["circle", "disc"], "device": "cpu"}},
        "metrics": metrics,
    }


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[dict, list[dict], Path]:
    """One toy-world run with every registered metric at its ``example`` config."""
    tmp = tmp_path_factory.mktemp("contract")
    cfg = _config(tmp, [{"name": n, "config": dict(METRICS.get(n).example)} for n in NAMES])
    outcome = run_pipeline(resolve_config(cfg), show_progress=False)
    records = [json.loads(line) for line in (tmp / "out" / "records.jsonl").read_text().splitlines()]
    return outcome.report, records, tmp


@pytest.mark.parametrize("name", NAMES)
def test_declares_direction_group_presets_and_example(name: str) -> None:
    cls = METRICS.get(name)
    assert issubclass(cls, Metric)
    assert isinstance(cls.higher_is_better, bool)
    assert cls.group in GROUPS
    assert isinstance(cls.presets, dict) and all(isinstance(v, str) and v for v in cls.presets.values())
    assert cls.example, f"{name} has no toy-world example config"
    for score in cls.benchscore_entries():
        assert score.group in GROUPS and isinstance(score.higher_is_better, bool)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name: str) -> None:
    cls = METRICS.get(name)
    first = cls.Config.model_validate(cls.example)
    dumped = first.model_dump(mode="json")
    assert cls.Config.model_validate(dumped).model_dump(mode="json") == dumped
    assert json.loads(json.dumps(dumped)) == dumped


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_the_toy_world_with_a_finite_value_details_and_records(name: str, toy_run) -> None:
    report, records, _ = toy_run
    entry = report["metrics"][name]
    assert entry["status"] == "ok", entry.get("error")
    assert isinstance(entry["value"], float) and math.isfinite(entry["value"])
    assert entry["details"]
    assert entry["higher_is_better"] is METRICS.get(name).higher_is_better
    rows = [r for r in records if r["metric"] == name]
    assert rows and all("cache_key" in r and "prompt" in r for r in rows)


@pytest.fixture(scope="module")
def contexts(toy_run):
    """A metric context on the edited toy pipeline (requests of attack metrics read its text encoder)."""
    from erasekit.detectors import DetectorPool
    from erasekit.models.loading import load_base_pipeline

    _, _, tmp = toy_run
    pipe = load_base_pipeline("toy", device="cpu")
    run = resolve_config(_config(tmp, [{"name": n, "config": dict(METRICS.get(n).example)} for n in NAMES]))
    pool = DetectorPool("cpu")

    def make() -> dict[str, Metric]:
        out = {}
        for m in run.metrics:
            ctx = MetricContext(run=run, pipe=pipe, model_fingerprint="contract", detectors=pool, cache_dir=tmp / "out" / "cache")
            out[m.name] = m.cls.create(m.config, ctx, f"{m.path}.config")
        return out

    return make


@pytest.mark.parametrize("name", NAMES)
def test_requests_are_deterministic(name: str, contexts) -> None:
    a, b = contexts()[name], contexts()[name]
    ra, rb = a.requests(), b.requests()
    assert ra and ra == rb


@pytest.mark.parametrize("name", NAMES)
def test_misaligned_images_are_a_clean_error(name: str, contexts) -> None:
    """compute() handed fewer images than it asked for raises ErasekitError (the runner records it
    as a failed metric and keeps the others), never an IndexError deep inside."""
    metric = contexts()[name]
    n = len(metric.requests())
    with pytest.raises(ErasekitError, match="images"):
        metric.compute([object()] * (n - 1))


# ---------------------------------------------------------------- structure


def _imported_modules(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = f"{package}.{mod}" if mod else package
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("package,registry", [(metrics_pkg, METRICS), (techniques_pkg, TECHNIQUES)], ids=["metrics", "techniques"])
def test_no_component_module_imports_a_sibling_component(package, registry) -> None:
    components = {registry.get(n).__module__ for n in registry.names() if registry.get(n).__module__.startswith(package.__name__)}
    assert len(components) >= 2
    for mod in components:
        path = Path(package.__path__[0]) / f"{mod.rsplit('.', 1)[-1]}.py"
        imported = _imported_modules(path, package.__name__)
        siblings = (imported & components) - {mod}
        assert not siblings, f"{mod} imports {sorted(siblings)}"


def _annotation(model: type, key: str) -> str:
    return str(model.model_fields[key].annotation)


SHARED_BLOCKS = [ConceptFields, ImagesFields, JudgeFields]


@pytest.mark.parametrize("name", NAMES)
def test_same_meaning_same_key(name: str) -> None:
    """No config field is named after a synonym of a canonical key; canonical keys have the shared
    block's type; every alias is accepted and normalised to the canonical key."""
    cfg_cls = METRICS.get(name).Config
    fields = set(cfg_cls.model_fields)
    aliases = cfg_cls.all_key_aliases()
    for canonical, synonyms in CANONICAL_KEYS.items():
        for syn in synonyms:
            assert syn not in fields, f"{name}: field {syn!r} should be {canonical!r}"
    for block in SHARED_BLOCKS:
        for key in block.model_fields:
            if key in fields:
                assert _annotation(cfg_cls, key) == _annotation(block, key), f"{name}.{key} differs from {block.__name__}"
    for alias, target in aliases.items():
        head = target.split(".")[0]
        assert head in fields, f"{name}: alias {alias!r} points at missing {target!r}"
    if "concept" in fields:
        for alias in CANONICAL_KEYS["concept"]:
            data = {**METRICS.get(name).example, alias: "square"}
            data.pop("concept", None)
            cfg = cfg_cls.model_validate(data)
            assert cfg.concept == "square" and alias not in cfg.model_dump()
    if "attack" in fields:  # flat attack keys land in the attack: block (err validates it against its adversarial)
        extra = {"adversarial": "mma"} if "adversarial" in fields else {}
        cfg = cfg_cls.model_validate({"n_tokens": 7, "n_candidates": 2, **extra})
        attack = cfg.attack_settings() if hasattr(cfg, "attack_settings") else cfg.attack
        assert (attack.n_tokens, attack.n_candidates) == (7, 2)
        if "steps" in type(attack).model_fields:
            cfg = cfg_cls.model_validate({"steps": 7, "batch": 5, **extra})
            attack = cfg.attack_settings() if hasattr(cfg, "attack_settings") else cfg.attack
            assert (attack.steps, attack.batch_size) == (7, 5)
        with pytest.raises(ValueError, match="both are set"):
            cfg_cls.model_validate({"n_tokens": 7, "attack": {"n_tokens": 8}})


def test_detector_literal_is_shared() -> None:
    names = typing.get_args(JudgeFields.model_fields["detector"].annotation)
    from erasekit.registry import DETECTORS

    assert set(names) - {"auto"} <= set(DETECTORS.names())
