"""The quickstart config as tests use it: examples/quickstart.yaml with its relative CSV paths
made absolute (they are relative to the repository root), ready to get a tmp output_dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def quickstart_config() -> dict[str, Any]:
    cfg = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    for m in cfg["metrics"]:
        for k, v in list(m["config"].items()):
            if k.endswith("_path"):
                m["config"][k] = str(REPO / v)
    return cfg
