"""Property test: any mutation that breaks a valid config → exit 2, one line, no traceback.

Mutations: drop a required key, rename a key to one that does not exist, give a value of
the wrong type, push a number out of range — at every level of the config.
"""

from __future__ import annotations

import copy
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erasekit.cli import main

REPO = Path(__file__).resolve().parents[2]

VALID: list[dict[str, Any]] = [
    json.loads(p.read_text()) for p in sorted((REPO / "examples").glob("mace_*.json"))
] + [
    {
        "output_dir": "r",
        "seed": 3,
        "batch_size": 4,
        "technique": {"name": "none", "config": {"model_id": "toy", "device": "cpu", "num_inference_steps": 10}},
        "metrics": [{"name": "clip_score", "config": {"limit": 4}}, {"name": "fid", "config": {"limit": 8, "allow_small_sample": True}}],
    }
]

# Numeric fields with their invalid values (out of range), by key name.
OUT_OF_RANGE = {
    "lambda_cfr": [0, -0.5, -100],
    "limit": [0, -3],
    "target_limit": [0],
    "retain_limit": [0],
    "adversarial_limit": [0],
    "num_inference_steps": [0, -1, 100000],
    "guidance_scale": [-1.0, 1000.0],
    "seed": [-1],
    "batch_size": [0, -8],
}
REQUIRED_TOP = ["output_dir", "technique"]
WRONG_TYPE_VALUES = [{"nested": 1}, [1, [2]], None]
STRING_FIELDS = {"output_dir", "name", "erase_concept", "save_path", "target_prompts_path", "retain_prompts_path",
                 "target_concept", "retain_concept", "device"}
NUMBER_FIELDS = set(OUT_OF_RANGE)


def _walk(node: Any, path: tuple = ()) -> list[tuple]:
    """All (container path, key) pairs of mapping entries."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((path, k))
            out.extend(_walk(v, path + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_walk(v, path + (i,)))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def broken_configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg = copy.deepcopy(draw(st.sampled_from(VALID)))
    entries = _walk(cfg)
    kind = draw(st.sampled_from(["drop", "rename", "wrong_type", "range"]))
    if kind == "drop":
        choices = [((), k) for k in REQUIRED_TOP] + [((), "metric" if "metric" in cfg else "metrics")]
        choices += [(p, k) for p, k in entries if k == "name"]
        parent, key = draw(st.sampled_from(choices))
        del _get(cfg, parent)[key]
    elif kind == "rename":
        parent, key = draw(st.sampled_from(entries))
        suffix = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
        container = _get(cfg, parent)
        container[f"zz{suffix}_{key}"] = container.pop(key)
    elif kind == "wrong_type":
        cands = [(p, k) for p, k in entries if k in STRING_FIELDS | NUMBER_FIELDS or k == "config"]
        parent, key = draw(st.sampled_from(cands))
        if key == "config":
            value = draw(st.sampled_from([[1, 2], "text", 5]))
        elif key in NUMBER_FIELDS:
            value = draw(st.sampled_from(["abc", {"x": 1}, [1]] if key != "seed" else ["abc", {"x": 1}, [1], 1.5]))
        else:
            value = draw(st.sampled_from([{"x": 1}, 12, [{"a": 1}], 3.5] if key != "erase_concept" else [{"x": 1}, 12, [1, 2], None]))
        _get(cfg, parent)[key] = value
    else:
        cands = [(p, k) for p, k in entries if k in OUT_OF_RANGE]
        if not cands:  # every valid config has a technique config we can push out of range
            cfg["technique"]["config"]["num_inference_steps"] = 0
            return cfg
        parent, key = draw(st.sampled_from(cands))
        _get(cfg, parent)[key] = draw(st.sampled_from(OUT_OF_RANGE[key]))
    return cfg


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cfg=broken_configs())
def test_mutated_configs_fail_cleanly(cfg: dict[str, Any], tmp_path_factory) -> None:
    p = tmp_path_factory.mktemp("fuzz") / "c.json"
    p.write_text(json.dumps(cfg))
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["validate", "--portable", str(p)])  # the mutation, not this machine, must cause exit 2
    text = err.getvalue().strip()
    assert code == 2, (cfg, text, out.getvalue())
    assert len(text.splitlines()) == 1, text
    assert text.startswith("erasekit: config error: ") and "Fix:" in text, text
    assert "Traceback" not in text


def test_valid_configs_pass(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    for i, cfg in enumerate(VALID):
        p = tmp_path / f"v{i}.json"
        p.write_text(json.dumps(cfg))
        with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
            assert main(["validate", "--portable", str(p)]) == 0  # the spec examples ask for CUDA
