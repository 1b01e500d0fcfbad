"""What a run tells a person while it works: named phases and one-line messages.

On a terminal a phase shows a spinner; elsewhere (CI logs, a scheduler's output file) it is a
plain line. Every message also goes to the ``erasekit`` logger, hence to ``output_dir/run.log``.
A phase that takes over a second reports its duration, so a long attack never looks like a hang.
Only the main process of a distributed run speaks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("erasekit")


class Narrator:
    """``say(msg)`` and ``phase(name)`` for one run; ``spinners`` and ``speaks`` may change once the
    run knows whether it is the main process."""

    def __init__(self, console: Any = None, *, spinners: bool = True, speaks: bool = True) -> None:
        self.console = console
        self.spinners = spinners
        self.speaks = speaks

    def say(self, msg: str) -> None:
        if not self.speaks:
            return
        if self.console is not None:
            self.console.print(msg, markup=False, highlight=False)
        log.info(msg)

    @contextlib.contextmanager
    def phase(self, name: str, spin: bool = True) -> Iterator[None]:
        """``spin=False`` for steps with a progress bar of their own (two live displays garble)."""
        t0 = time.perf_counter()
        spinner = None
        if spin and self.spinners and self.speaks and self.console is not None:
            spinner = self.console.status(name + " …")
            spinner.start()
        else:
            self.say(f"{name} …")
        try:
            yield
        finally:
            if spinner is not None:
                spinner.stop()
            elapsed = time.perf_counter() - t0
            if elapsed > 1.0:
                self.say(f"{name}: {elapsed:.1f} s")
