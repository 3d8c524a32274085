"""The resolver: a change takes effect within refresh_s, an outage keeps the last good flags."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from prometheus_client import CollectorRegistry

from graphops.errors import ConfigurationError, ConflictError, InvalidInputError, StorageError
from graphops.flags.model import Flag, FlagChange
from graphops.flags.openfeature import GraphopsProvider
from graphops.flags.resolver import Flags, prompt_flag
from graphops.flags.store_memory import MemoryFlagStore
from graphops.observe.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryFlagStore):
    """A memory store whose reads fail while ``down``; counts the reads."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.reads = 0

    def all(self) -> dict[str, Flag]:
        self.reads += 1
        if self.down:
            raise StorageError("the flag database is not answering")
        return super().all()


def answer_flag(weights: Mapping[str, int], **extra: Any) -> Flag:
    return Flag("prompt.answer", {"v2": 2, "v3": 3, "on": True}, weights, "v2", **extra)


@pytest.fixture
def store() -> FlakyStore:
    made = FlakyStore()
    made.put(answer_flag({"v2": 100}), actor="test")
    return made


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_change_takes_effect_within_refresh_s_without_a_restart(
    store: FlakyStore, metrics: Metrics
) -> None:
    clock = Clock()
    flags = Flags(store, refresh_s=5, metrics=metrics, clock=clock)
    assert flags.resolve("prompt.answer", {"user": "ana"}).variant == "v2"  # type: ignore[union-attr]
    store.put(answer_flag({"v3": 100}), actor="test")
    clock.now += 4.9
    assert flags.resolve("prompt.answer", {"user": "ana"}).variant == "v2"  # type: ignore[union-attr]
    clock.now += 0.2
    got = flags.resolve("prompt.answer", {"user": "ana"})
    assert got is not None and (got.variant, got.value, got.version) == ("v3", 3, 2)
    assert store.reads == 2  # one read per refresh, none per resolution
    assert (
        _count(
            metrics,
            "graphops_flag_evaluations_total",
            flag="prompt.answer",
            variant="v3",
            reason="SPLIT",
        )
        == 1
    )
    assert flags.resolve("prompt.other") is None
    assert prompt_flag("answer") == "answer"


def test_an_outage_keeps_the_last_good_flags_counts_them_and_retries_at_most_every_retry_s(
    store: FlakyStore, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    flags = Flags(store, refresh_s=1, retry_s=10, metrics=metrics, clock=clock)
    flags.resolve("prompt.answer", {"user": "ana"})
    store.down = True
    clock.now += 2
    with caplog.at_level(logging.WARNING, logger="graphops.flags"):
        for _ in range(5):
            got = flags.resolve("prompt.answer", {"user": "ana"})
            assert got is not None and got.variant == "v2" and got.stale
    assert flags.stale and store.reads == 2  # one failed read, then resting
    assert _count(metrics, "graphops_flag_stale_total", flag="prompt.answer") == 5
    assert len([r for r in caplog.records if "flag store failed" in r.message]) == 1
    clock.now += 10
    store.down = False
    fresh = flags.resolve("prompt.answer", {"user": "ana"})
    assert fresh is not None and not fresh.stale and not flags.stale


def test_a_store_that_never_answered_raises_instead_of_guessing(store: FlakyStore) -> None:
    store.down = True
    flags = Flags(store, metrics=Metrics(CollectorRegistry()))
    with pytest.raises(StorageError):
        flags.resolve("prompt.answer", {"user": "ana"})


def test_bad_arguments_are_clear_errors(store: FlakyStore) -> None:
    with pytest.raises(ConfigurationError, match="FlagStore"):
        Flags({"prompt.answer": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="refresh_s"):
        Flags(store, refresh_s=-1)
    with pytest.raises(InvalidInputError, match="not a flag name"):
        Flags(store).resolve("x'; DROP TABLE graphops_flags; --")


def test_a_stale_write_is_refused_and_changes_nothing() -> None:
    store = MemoryFlagStore()
    first = store.put(answer_flag({"v2": 100}), actor="ana", expected=0)
    with pytest.raises(ConflictError, match="version 1, not 0"):
        store.put(answer_flag({"v3": 100}), actor="bob", expected=0)
    assert store.get("prompt.answer") == first
    [change] = store.history("prompt.answer")
    assert isinstance(change, FlagChange) and (change.actor, change.version) == ("ana", 1)


# ------------------------------------------------------------------ OpenFeature
@pytest.fixture
def client(store: FlakyStore) -> Any:
    store.put(
        Flag(
            "features",
            {"on": True, "off": False, "n": 7, "ratio": 0.25, "obj": {"k": [1, 2]}, "text": "hi"},
            {"on": 50, "off": 50},
            "off",
        ),
        actor="test",
    )
    api.set_provider(GraphopsProvider(Flags(store, metrics=Metrics(CollectorRegistry()))))
    yield api.get_client()
    api.clear_providers()


def test_openfeature_reads_the_same_variant_a_run_gets(client: Any, store: FlakyStore) -> None:
    flags = Flags(store, metrics=Metrics(CollectorRegistry()))
    for user in ("ana", "bob", "carol", "dan"):
        details = client.get_boolean_details("features", False, EvaluationContext(user))
        ours = flags.resolve("features", {"user": user})
        assert ours is not None
        assert (details.value, details.variant) == (ours.value, ours.variant)
        assert details.reason == Reason.SPLIT and details.flag_metadata == {"version": 1}
    by_attribute = client.get_boolean_details(
        "features", False, EvaluationContext(None, {"user": "ana"})
    )
    assert by_attribute.variant == flags.resolve("features", {"user": "ana"}).variant  # type: ignore[union-attr]
    nobody = client.get_boolean_details("features", True)
    assert (nobody.value, nobody.reason) == (False, Reason.DEFAULT)


def test_openfeature_typed_values_and_errors(client: Any, store: FlakyStore) -> None:
    for variant, read, value in [
        ("n", client.get_integer_details, 7),
        ("ratio", client.get_float_details, 0.25),
        ("n", client.get_float_details, 7.0),
        ("obj", client.get_object_details, {"k": [1, 2]}),
        ("text", client.get_string_details, "hi"),
    ]:
        features = store.get("features")
        assert features is not None
        store.put(
            Flag("typed", {"x": 0, variant: features.variants[variant]}, {variant: 100}, variant),
            actor="test",
        )
        api.set_provider(GraphopsProvider(Flags(store, metrics=Metrics(CollectorRegistry()))))
        got = read("typed", None, EvaluationContext("ana"))  # the client reads the new provider
        assert got.value == value and got.error_code is None, (variant, got)
    wrong = api.get_client().get_boolean_details("typed", True, EvaluationContext("ana"))
    assert (wrong.value, wrong.error_code, wrong.reason) == (
        True,
        ErrorCode.TYPE_MISMATCH,
        Reason.ERROR,
    )
    missing = api.get_client().get_string_details("nothing", "dflt")
    assert (missing.value, missing.error_code) == ("dflt", ErrorCode.FLAG_NOT_FOUND)
    bad = api.get_client().get_string_details("Bad Name", "dflt")
    assert (bad.value, bad.error_code) == ("dflt", ErrorCode.GENERAL)


def test_openfeature_says_stale_while_the_store_is_down(store: FlakyStore) -> None:
    clock = Clock()
    flags = Flags(store, refresh_s=1, metrics=Metrics(CollectorRegistry()), clock=clock)
    provider = GraphopsProvider(flags)
    assert provider.get_metadata().name == "graphops"
    assert provider.resolve_integer_details("prompt.answer", 0, EvaluationContext("ana")).value == 2
    store.down = True
    clock.now += 2
    details = provider.resolve_integer_details("prompt.answer", 0, EvaluationContext("ana"))
    assert (details.value, details.reason) == (2, Reason.STALE)
