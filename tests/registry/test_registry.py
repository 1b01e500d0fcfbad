"""The name → class registry (``erasekit.registry.Registry``) and the built-in entries it holds."""

from __future__ import annotations

import pytest

from erasekit.registry import DETECTORS, METRICS, TECHNIQUES, Registry, load_builtins

BUILTIN_TECHNIQUES = ["mace", "none"]
BUILTIN_METRICS = ["asr_custom", "asr_i2p", "clip_score", "err", "fid", "mma_diffusion", "tifa", "ua_ira"]


@pytest.fixture
def reg() -> Registry[type]:
    return Registry("widget")  # no entry-point group: nothing from installed plugins


class Alpha:
    """First line of the docstring.

    More text."""


class Beta:
    pass


def test_register_returns_the_object_and_get_is_case_insensitive(reg) -> None:
    assert reg.register("Alpha")(Alpha) is Alpha
    assert reg.get("alpha") is Alpha and reg.get("ALPHA") is Alpha
    assert reg.canonical("aLpHa") == "alpha"
    assert reg.names() == ["alpha"]


def test_unknown_name_is_a_key_error(reg) -> None:
    assert reg.canonical("nope") is None
    with pytest.raises(KeyError):
        reg.get("nope")


def test_aliases_resolve_to_the_canonical_entry(reg) -> None:
    reg.register("alpha", aliases=("First", "a1"))(Alpha)
    assert reg.get("first") is Alpha and reg.get("A1") is Alpha
    assert reg.canonical("FIRST") == "alpha"
    assert reg.entries()[0].aliases == ("first", "a1")
    assert reg.names() == ["alpha"]  # aliases are not entries


def test_description_defaults_to_the_first_docstring_line(reg) -> None:
    reg.register("alpha")(Alpha)
    reg.register("beta", description="the second one")(Beta)
    assert {e.name: e.description for e in reg.entries()} == {"alpha": "First line of the docstring.", "beta": "the second one"}


def test_registering_another_object_under_a_taken_name_is_an_error(reg) -> None:
    reg.register("alpha")(Alpha)
    reg.register("ALPHA")(Alpha)  # the same object again is harmless (module re-imported)
    with pytest.raises(ValueError, match="widget 'Alpha' is registered twice"):
        reg.register("Alpha")(Beta)
    assert reg.get("alpha") is Alpha


def test_unregister_removes_the_entry_and_its_aliases(reg) -> None:
    reg.register("alpha", aliases=("first",))(Alpha)
    reg.register("beta")(Beta)
    reg.unregister("FIRST")  # by alias
    assert reg.canonical("alpha") is None and reg.canonical("first") is None
    assert reg.names() == ["beta"]
    reg.unregister("not-there")  # unknown names are ignored
    reg.register("alpha")(Beta)  # the name is free again
    assert reg.get("alpha") is Beta


def test_suggest_did_you_mean(reg) -> None:
    reg.register("asr_i2p")(Alpha)
    reg.register("clip_score", aliases=("clipscore",))(Beta)
    assert reg.suggest("asr_ip2") == "asr_i2p"
    assert reg.suggest("CLIP_SCORE") == "clip_score"
    assert reg.suggest("clipscor") == "clipscore"  # aliases are candidates too
    assert reg.suggest("zzzzzzzz") is None


def test_entries_are_sorted_by_name(reg) -> None:
    for name in ["zeta", "Alpha", "mid"]:
        reg.register(name)(type(name, (), {}))
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert [e.name for e in reg.entries()] == ["alpha", "mid", "zeta"]


def test_load_builtins_registers_the_techniques_and_metrics() -> None:
    load_builtins()
    assert set(BUILTIN_TECHNIQUES) <= set(TECHNIQUES.names())
    assert set(BUILTIN_METRICS) <= set(METRICS.names())
    assert TECHNIQUES.get("baseline") is TECHNIQUES.get("none")
    assert METRICS.get("asr_mma_diffusion") is METRICS.get("mma_diffusion")
    assert {"clip", "nudenet", "toy_judge", "vqa"} <= set(DETECTORS.names())
    for reg_ in (TECHNIQUES, METRICS, DETECTORS):
        assert reg_.names() == sorted(reg_.names())
        assert all(e.description for e in reg_.entries()), "every built-in has a one-line description"
