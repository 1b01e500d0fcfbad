"""`erasekit list NAME` documents every config key; `erasekit schema` is valid JSON Schema;
compare's CSV never hands a spreadsheet a formula."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from erasekit.cli import main
from erasekit.registry import METRICS, TECHNIQUES, load_builtins

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict:
    from erasekit.config_docs import config_json_schema

    return config_json_schema()


def _keys(out: str) -> dict[str, str]:
    """key → its whole line, from the config-keys table of `erasekit list NAME`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("config keys"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("  "):
            break
        rows[line.split()[0]] = line
    return rows


def test_list_metric_shows_every_key_with_type_and_default(capsys) -> None:
    assert main(["list", "asr_custom"]) == 0
    out = capsys.readouterr().out
    load_builtins()
    fields = METRICS.get("asr_custom").Config.model_fields
    rows = _keys(out)
    assert set(fields) <= set(rows)
    assert "int" in rows["images_per_prompt"].split() and " 1 " in rows["images_per_prompt"] + " "
    assert "list[str] | None" in rows["prompts"]
    assert "auto|clip" in rows["detector"] or "|" in rows["detector"].split()[1]
    assert "direction:" in out and "group:" in out


def test_list_technique_shows_nested_and_defaults(capsys) -> None:
    assert main(["list", "mace"]) == 0
    out = capsys.readouterr().out
    rows = _keys(out)
    load_builtins()
    fields = TECHNIQUES.get("mace").Config.model_fields
    assert set(fields) <= set(rows)
    assert "CompVis/stable-diffusion-v1-4" in rows["model_id"]
    assert "direction:" not in out  # a technique has no direction


def test_list_shows_nested_block_keys(capsys) -> None:
    load_builtins()
    nested = [(e.name, k) for e in METRICS.entries() for k, f in e.obj.Config.model_fields.items()
              if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields")]
    if not nested:
        pytest.skip("no metric with a nested config block")
    name, key = nested[0]
    assert main(["list", name]) == 0
    out = capsys.readouterr().out
    inner = next(iter(METRICS.get(name).Config.model_fields[key].annotation.model_fields))
    assert f"{key}.{inner}" in out


def test_list_unknown_name_is_one_line_with_suggestion(capsys) -> None:
    assert main(["list", "asr_custon"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'asr_custom'" in err
    assert captured.out == ""


def test_list_all_shows_direction_and_presets_from_the_classes(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    load_builtins()
    metric_lines = lines[lines.index("metrics:") + 1 : lines.index("detectors:")]
    assert {line.split()[0] for line in metric_lines} == set(METRICS.names())
    presets = lines[lines.index("presets:") + 1 :]
    from erasekit.detectors.presets import NUDENET_PRESETS

    assert any(line.split()[0] == f"asr_i2p/{name}" for line in presets for name in NUDENET_PRESETS)
    for e in METRICS.entries():
        for name in getattr(e.obj, "presets", {}) or {}:
            assert any(line.split()[0] == f"{e.name}/{name}" for line in presets if line.strip())


def test_schema_is_json_with_every_component(schema, capsys) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema
    text = json.dumps(schema)
    load_builtins()
    for name in METRICS.names() + TECHNIQUES.names():
        assert f'"const": "{name}"' in text or f'"{name}"' in text
    assert {"output_dir", "technique", "metric", "metrics", "seed"} <= set(schema["properties"])


def test_schema_validates_the_quickstart(schema) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    quick = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    errors = [e.message for e in validator.iter_errors(quick)]
    assert not errors, errors
    bad = json.loads(json.dumps(quick))
    bad["metrics"][0]["config"]["images_per_promt"] = 4  # a typo is caught by the schema too
    assert list(validator.iter_errors(bad))
    bad = json.loads(json.dumps(quick))
    bad["technique"]["name"] = "no_such_technique"
    assert list(validator.iter_errors(bad))


def test_compare_csv_escapes_formula_cells(tmp_path: Path, monkeypatch, capsys) -> None:
    from erasekit.report.compare import csv_cell

    ok = {"status": "ok", "value": 0.25, "details": {}}
    run = tmp_path / "=HYPERLINK(1)"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"technique": {"name": "@mace"}, "metrics": {"asr_custom": ok}}))
    monkeypatch.chdir(tmp_path)  # the run folder given relatively: its cell starts with '='
    assert main(["compare", "=HYPERLINK(1)", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:3] == ["run", "technique", "asr_custom"]
    assert rows[1][:3] == ["'=HYPERLINK(1)", "'@mace", "0.25"]
    assert csv_cell("+1") == "'+1" and csv_cell("-1+1") == "'-1+1" and csv_cell("\tcmd") == "'\tcmd" and csv_cell("\rx") == "'\rx"
    assert csv_cell(-0.5) == -0.5 and csv_cell("ok") == "ok" and csv_cell(None) == ""
