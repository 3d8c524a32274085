"""The steps' routing contract, on states that say refused or hit (no step produces them yet)."""

from __future__ import annotations

from langgraph.graph import END

from graphops.steps import cache_hit, cache_route, guard_route, refused

REFUSED = {"graphops": {"guard": {"outcome": "refused"}}}
HIT = {"graphops": {"guard": {"outcome": "allowed"}, "cache": {"hit": True}}}
MISS = {"graphops": {"guard": {"outcome": "allowed"}, "cache": {"hit": False}}}


def test_predicates_read_the_ops_channel() -> None:
    assert refused(REFUSED) and not refused(HIT) and not refused({})
    assert cache_hit(HIT) and not cache_hit(MISS) and not cache_hit({})


def test_a_refused_run_ends_and_a_hit_skips_the_nodes() -> None:
    after_guard = guard_route("cache_lookup")
    assert after_guard(REFUSED) == END
    assert after_guard(MISS) == "cache_lookup"
    after_lookup = cache_route("settle", ["first", "second"])
    assert after_lookup(HIT) == "settle"
    assert after_lookup(MISS) == ["first", "second"]
