"""``python -m erasekit`` (also what ``torchrun``/``accelerate launch -m erasekit`` start)."""

import sys

from erasekit.cli import main

sys.exit(main())
