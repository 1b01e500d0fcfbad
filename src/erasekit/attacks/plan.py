"""The attacks a metric needs on one pipeline's text path: computed once, cached, split across ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from erasekit.attacks.cache import AttackCache
from erasekit.attacks.settings import AttackSettings

if TYPE_CHECKING:
    from erasekit.attacks.mma import AttackResult, MMAAttack


class AttackPlan:
    """The attacks a metric needs on one pipeline's text path, computed once and cached.

    ``jobs`` = (target, restart) for every target and ``n_candidates`` restarts.
    :meth:`prepare` computes a rank's share (``jobs[rank::world]``) into the shared
    cache (the runner's precomputation hook, split across ranks); :meth:`results`
    returns every job's result, in job order, from memory, the cache, or a search.
    Counters for the report: ``steps_run`` (GCG steps executed by this plan — 0 when
    everything came from the cache), ``cache_hits`` and ``computed``.
    The pipeline is only read (no image is generated); a text encoder in train mode
    is put in eval mode for the search and restored afterwards.
    """

    def __init__(
        self,
        pipe: Any,
        cache_dir: Any,
        targets: Sequence[str],
        settings: AttackSettings,
        banned: Sequence[str],
        n_candidates: int = 1,
        progress: bool = True,
    ) -> None:
        from pathlib import Path

        self.pipe = pipe
        self.jobs: list[tuple[str, int]] = [(t, j) for t in targets for j in range(int(n_candidates))]
        self.cache = AttackCache(Path(cache_dir) / "attacks")
        self.settings = settings
        self.banned = list(banned)
        self.progress = progress
        self._attack: MMAAttack | None = None
        self._done: dict[tuple[str, int], AttackResult] = {}

    @property
    def attack(self) -> MMAAttack:
        if self._attack is None:
            from erasekit.attacks.mma import MMAAttack  # the search imports this module

            if self.pipe is None or getattr(self.pipe, "text_encoder", None) is None:
                raise RuntimeError("the MMA attack needs the model's text encoder (no pipeline in this context)")
            self._attack = MMAAttack(self.pipe.text_encoder, self.pipe.tokenizer, settings=self.settings,
                                     banned=self.banned, cache=self.cache, progress=self.progress)
        return self._attack

    def _run(self, jobs: Sequence[tuple[str, int]]) -> None:
        todo = [j for j in jobs if j not in self._done]
        if not todo:
            return
        te = self.attack.te
        was_training = bool(getattr(te, "training", False))
        if was_training:
            te.eval()
        try:
            for target, restart in todo:
                self._done[(target, restart)] = self.attack.attack(target, restart)
        finally:
            if was_training:
                te.train()

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
