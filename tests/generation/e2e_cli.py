"""`erasekit run` in a subprocess, with the test metrics of e2e_metrics registered.

Usage: python e2e_cli.py run CONFIG --no-progress
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from e2e_metrics import register  # noqa: E402

from erasekit.cli import main  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)  # same as the test process, so floats match bit for bit
    register()
    print("ready", flush=True)
    sys.exit(main(sys.argv[1:]))
