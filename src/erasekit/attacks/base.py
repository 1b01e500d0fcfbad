"""The attack contract: one adversarial prompt per (target, restart), cached, with counters.

Why one base class: every attack erasekit runs (MMA-Diffusion, Ring-A-Bell, UnlearnDiffAtk,
P4D) shares everything but its search: the on-disk cache (:mod:`erasekit.attacks.cache`)
keyed by what the search *reads* (the text encoder's fingerprint for a text-only attack, the
attacked model's for one that back-propagates through the UNet), the target, every parameter
and the seed; the counters the report shows (``steps_run`` — 0 on a second run —,
``cache_hits``, ``computed``); one progress display; eval mode for the modules it reads.
An attack is then one new file: a subclass with ``name``/``version``, :meth:`Attack.reads`,
:meth:`Attack.params` and :meth:`Attack.search`, plus an ``ATTACKS`` registry entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from erasekit.attacks.cache import AttackCache

log = logging.getLogger(__name__)


@dataclass
class AttackResult:
    """One adversarial prompt: its text, tokens, final loss, and how it was obtained.

    ``cosine`` is set by the attacks whose objective is a similarity (MMA's pooled cosine);
    ``extra`` holds what one attack alone reports (UnlearnDiffAtk's pre-attack verdict …).
    """

    target: str
    prompt: str
    token_ids: list[int]
    loss: float
    cosine: float | None = None
    restart: int = 0
    seed: int = 0
    steps_run: int = 0  # steps executed by *this* call (0 when served from the cache)
    cached: bool = False
    seconds: float = 0.0  # search time when it was computed
    init_prompt: str = ""
    loss_curve: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rng_seed(attack: str, seed: int, restart: int) -> int:
    """The generator seed of one restart of one attack: stable across processes and versions
    of Python (no ``hash()``), different per attack so two attacks never share a start."""

    d = hashlib.sha256(f"erasekit-{attack}:{int(seed)}:{int(restart)}".encode()).digest()
    return int.from_bytes(d[:8], "big") & (2**63 - 1)


class Attack(ABC):
    """Base class of an attack on one pipeline (or text path), with the cache.

    ``attack(target, restart)`` returns an :class:`AttackResult` from the cache when the same
    search was run before (same :meth:`reads`, target, :meth:`params`, seed, restart), else
    runs :meth:`search` and stores it.
    """

    #: registry name (``ring_a_bell``) and algorithm version: bump ``version`` when the search
    #: changes, so that old cache entries stop matching
    name: ClassVar[str] = "attack"
    version: ClassVar[str] = "attack/0"
    #: model families the attack reads correctly (:mod:`erasekit.models.families`); an attack that
    #: reads the UNet must condition it as the family does (SDXL: pooled text and size ids) to add ``sdxl``
    families: ClassVar[tuple[str, ...]] = ("sd1", "sd2")

    def __init__(self, settings: Any, cache: AttackCache | None = None, progress: bool = True) -> None:
        self.settings = settings
        self.cache = cache
        self.progress = progress
        self.steps_run = 0
        self.cache_hits = 0
        self.computed = 0

    # ------------------------------------------------------------ what a subclass defines
    @abstractmethod
    def reads(self) -> dict[str, str]:
        """The identity of what the search reads, e.g. ``{"text_encoder": fingerprint}``."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Every parameter the result depends on (besides target, seed and restart)."""

    @abstractmethod
    def search(self, target: str, restart: int = 0) -> AttackResult:
        """Run the search (no cache); count executed steps in ``self.steps_run``."""

    def modules(self) -> list[Any]:
        """The torch modules the search reads (put in eval mode while it runs)."""
        return []

    # ------------------------------------------------------------ shared machinery
    def cache_payload(self, target: str, restart: int) -> dict[str, Any]:
        return {"attack": self.version, **self.reads(), "target": target, "params": self.params(),
                "seed": int(self.settings.seed), "restart": int(restart)}

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Every module the search reads in eval mode (dropout off), restored afterwards."""
        training = [(m, bool(getattr(m, "training", False))) for m in self.modules()]
        for m, was in training:
            if was:
                m.eval()
        try:
            yield
        finally:
            for m, was in training:
                if was:
                    m.train()

    def attack(self, target: str, restart: int = 0) -> AttackResult:
        """The adversarial prompt for ``target`` (restart ``restart``), cached."""
        payload = self.cache_payload(target, restart) if self.cache is not None else None
        if self.cache is not None and payload is not None:
            hit = self.cache.get(payload)
            if hit is not None:
                self.cache_hits += 1
                fields = {k: hit[k] for k in AttackResult.__dataclass_fields__ if k in hit}
                fields.update(target=target, restart=int(restart), seed=int(self.settings.seed), steps_run=0, cached=True)
                return AttackResult(**fields)
        with self.eval_mode():
            res = self.search(target, restart)
        self.computed += 1
        log.info("%s attack on %r (restart %d): loss %.4f after %d steps in %.1fs: %r",
                 self.name, target, restart, res.loss, res.steps_run, res.seconds, res.prompt)
        if self.cache is not None and payload is not None:
            self.cache.put(payload, {k: v for k, v in res.as_dict().items() if k not in ("steps_run", "cached")})
        return res

    def attack_all(self, targets: Sequence[str], n_candidates: int = 1) -> list[AttackResult]:
        """``n_candidates`` restarts for each target, target-major order."""
        return [self.attack(t, j) for t in targets for j in range(int(n_candidates))]

    def describe(self) -> dict[str, Any]:
        """The attack's protocol for a metric's details."""
        return {"algorithm": self.version, **self.settings.model_dump(), **self.reads()}


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """The one progress display of every attack: a tqdm bar on a terminal, nothing in logs/CI
    (``disable=None``); the loss goes in its postfix. None when disabled."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=None)


def short(text: str, n: int = 24) -> str:
    """A prompt cut to ``n`` characters for a progress label."""
    return text if len(text) <= n else text[: n - 1] + "…"
