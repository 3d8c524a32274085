"""Flags: malformed ones are refused whole, assignment is sticky, shares follow the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from graphops.errors import InvalidInputError
from graphops.flags.evaluate import bucket, evaluate
from graphops.flags.model import Flag, Rule


def canary(weight: int = 5, **extra: Any) -> Flag:
    return Flag(
        "prompt.answer",
        {"control": 2, "canary": 3},
        {"control": 100 - weight, "canary": weight},
        "control",
        **extra,
    )


USERS = [f"user-{i}" for i in range(20_000)]


def shares(flag: Flag) -> Counter[str]:
    return Counter(evaluate(flag, {"user": u}).variant for u in USERS)


def test_the_weights_give_their_share_of_users_and_a_change_moves_it() -> None:
    """20,000 users: each share within 4 standard deviations of its weight."""
    for weight in (5, 25, 50, 100):
        got = shares(canary(weight))["canary"] / len(USERS)
        p = weight / 100
        sd = (p * (1 - p) / len(USERS)) ** 0.5
        assert abs(got - p) <= 4 * sd + 1e-9, (weight, got)


def test_growing_the_canary_only_moves_users_onto_it() -> None:
    before = {u: evaluate(canary(5), {"user": u}).variant for u in USERS}
    after = {u: evaluate(canary(25), {"user": u}).variant for u in USERS}
    assert all(after[u] == "canary" for u in USERS if before[u] == "canary")
    back = {u: evaluate(canary(5), {"user": u}).variant for u in USERS}
    assert back == before  # a rollback to 5% gives everyone their old variant


def test_assignment_is_the_same_in_another_process() -> None:
    """No process state: another interpreter, another hash seed, the same variants."""
    code = (
        "import json, sys\n"
        "from graphops.flags.evaluate import evaluate\n"
        "from graphops.flags.model import Flag\n"
        "f = Flag('prompt.answer', {'control': 2, 'canary': 3}, "
        "{'control': 75, 'canary': 25}, 'control')\n"
        "print(json.dumps([evaluate(f, {'user': f'user-{i}'}).variant for i in range(2000)]))\n"
    )
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    here = [evaluate(canary(25), {"user": f"user-{i}"}).variant for i in range(2000)]
    assert runs[0] == runs[1] == here
    assert 300 < here.count("canary") < 700


def test_sticky_by_picks_the_first_attribute_the_run_has() -> None:
    flag = canary(50, sticky_by=("tenant", "user"))
    by_tenant = {evaluate(flag, {"tenant": "acme", "user": u}).variant for u in USERS[:200]}
    assert len(by_tenant) == 1  # the whole tenant shares one variant
    assert evaluate(flag, {"user": "ana"}).reason == "SPLIT"
    nothing = evaluate(flag, {"ip": "10.0.0.1"})
    assert (nothing.variant, nothing.reason) == ("control", "DEFAULT")


def test_rules_target_a_segment_or_a_sticky_share_of_it() -> None:
    flag = canary(
        0,
        rules=(
            Rule("tenant", ("acme",), "canary", op="equals"),
            Rule("plan", ("pro", "team"), "canary", percent=30),
        ),
    )
    hit = evaluate(flag, {"tenant": "acme", "user": "ana"})
    assert (hit.variant, hit.reason) == ("canary", "TARGETING_MATCH")
    pro = Counter(evaluate(flag, {"plan": "pro", "user": u}).variant for u in USERS[:5000])
    assert 0.27 < pro["canary"] / 5000 < 0.33
    assert all(
        evaluate(flag, {"plan": "free", "user": u}).variant == "control" for u in USERS[:500]
    )


def test_the_kill_switch_serves_the_default_to_everyone() -> None:
    flag = canary(100, killed=True, rules=(Rule("tenant", ("acme",), "canary"),))
    got = {evaluate(flag, {"user": u, "tenant": "acme"}) for u in USERS[:100]}
    assert {(a.variant, a.reason) for a in got} == {("control", "DISABLED")}


def test_buckets_spread_evenly() -> None:
    counts = Counter(bucket("f", f"user={i}") // 1000 for i in range(50_000))
    assert len(counts) == 10 and min(counts.values()) > 4500


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": {"control": 90, "canary": 5}}, "sum to 95, not 100"),
        ({"weights": {"control": 50, "canary": 50, "ghost": 0}}, "unknown variant 'ghost'"),
        ({"weights": {"control": 100.0}}, "whole percent"),
        ({"weights": {"control": True, "canary": 99}}, "whole percent"),
        ({"weights": {"control": 110, "canary": -10}}, "whole percent"),
        ({"default": "ghost"}, "default 'ghost' is not one of its variants"),
        ({"variants": {}}, "at least one variant"),
        ({"variants": {"Bad Name": 1}}, "not a variant name"),
        ({"variants": {"control": float("nan"), "canary": 1}}, "not a JSON value"),
        ({"variants": {"control": object(), "canary": 1}}, "not a JSON value"),
        ({"rules": (Rule("tenant", ("acme",), "ghost"),)}, "unknown variant 'ghost'"),
        ({"sticky_by": ()}, "at least one attribute"),
        ({"sticky_by": ("user; drop",)}, "not an attribute name"),
        ({"name": "x'; DROP TABLE graphops_flags; --"}, "not a flag name"),
        ({"name": "Answer"}, "not a flag name"),
        ({"name": "a" * 65}, "not a flag name"),
        ({"name": "a\x00b"}, "not a flag name"),
    ],
)
def test_malformed_flags_are_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "name": "prompt.answer",
        "variants": {"control": 2, "canary": 3},
        "weights": {"control": 95, "canary": 5},
        "default": "control",
    }
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Flag(**(fields | change))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"percent": 101}, "between 0 and 100"),
        ({"percent": float("inf")}, "between 0 and 100"),
        ({"values": ()}, "needs values"),
        ({"values": ("a", "b"), "op": "equals"}, "one value"),
        ({"op": "like"}, "'equals' or 'in'"),
        ({"attribute": "Tenant"}, "not an attribute name"),
    ],
)
def test_malformed_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Rule(**({"attribute": "tenant", "values": ("acme",), "variant": "canary"} | rule))


def test_a_flag_survives_its_json_and_keeps_its_variant_order() -> None:
    flag = canary(
        25,
        rules=(Rule("plan", ("pro",), "canary", percent=12.5),),
        description="the answer prompt's canary",
    )
    again = Flag.from_json(json.loads(json.dumps(flag.as_json())), version=3)
    assert again.as_json() == flag.as_json() and again.version == 3
    assert list(again.variants) == ["control", "canary"] and again.split == ("control", "canary")
    with pytest.raises(InvalidInputError, match="no field colour"):
        Flag.from_json({**flag.as_json(), "colour": "red"})
    with pytest.raises(InvalidInputError, match="misses or mistypes"):
        Flag.from_json({"name": "x"})
    with pytest.raises(InvalidInputError, match="JSON object"):
        Flag.from_json([1, 2])  # type: ignore[arg-type]
