"""The attacks a metric needs: computed once, cached, split across ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasekit.attacks.cache import AttackCache

if TYPE_CHECKING:
    from erasekit.attacks.base import Attack, AttackResult


class AttackPlan:
    """The attacks a metric needs on one model, computed once and cached.

    ``jobs`` = (target, restart) for every target and ``n_candidates`` restarts.
    :meth:`prepare` computes a rank's share (``jobs[rank::world]``) into the shared
    cache (the runner's precomputation hook, followed by a barrier); :meth:`results`
    returns every job's result, in job order, from memory, the cache, or a search.
    ``make_attack(cache)`` builds the attack the first time one is needed (so a plan whose
    results all come from a CSV never loads anything). Counters for the report:
    ``steps_run`` (search steps executed by this plan — 0 when everything came from the
    cache), ``cache_hits`` and ``computed``.
    """

    def __init__(self, make_attack: Callable[[AttackCache], Attack], cache_dir: str | Path, targets: Sequence[str],
                 n_candidates: int = 1) -> None:
        self.jobs: list[tuple[str, int]] = [(t, j) for t in targets for j in range(int(n_candidates))]
        self.cache = AttackCache(Path(cache_dir) / "attacks")
        self._make = make_attack
        self._attack: Attack | None = None
        self._done: dict[tuple[str, int], AttackResult] = {}

    @property
    def attack(self) -> Attack:
        if self._attack is None:
            self._attack = self._make(self.cache)
        return self._attack

    def _run(self, jobs: Sequence[tuple[str, int]]) -> None:
        for job in jobs:
            if job not in self._done:
                self._done[job] = self.attack.attack(*job)

    def prepare(self, rank: int = 0, world: int = 1) -> None:
        self._run(self.jobs[rank::world])

    def results(self) -> list[AttackResult]:
        self._run(self.jobs)
        return [self._done[j] for j in self.jobs]

    @property
    def steps_run(self) -> int:
        return self._attack.steps_run if self._attack is not None else 0

    @property
    def cache_hits(self) -> int:
        return self._attack.cache_hits if self._attack is not None else 0

    @property
    def computed(self) -> int:
        return self._attack.computed if self._attack is not None else 0

    def describe(self) -> dict[str, Any]:
        d = self.attack.describe()
        d.update(attack_steps_run=self.steps_run, attack_cache_hits=self.cache_hits, attacks_computed=self.computed,
                 cache_dir=str(self.cache.root))
        return d
