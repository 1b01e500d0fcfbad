"""`erasekit run` in a subprocess, with the test metrics of ``support.e2e_metrics`` registered.

Usage: PYTHONPATH=tests python tests/support/e2e_cli.py run CONFIG --no-progress
(the caller puts tests/ on PYTHONPATH so that ``support`` imports).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from erasekit.cli import main  # noqa: E402
from support.e2e_metrics import register  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)  # same as the test process, so floats match bit for bit
    register()
    print("ready", flush=True)
    sys.exit(main(sys.argv[1:]))
