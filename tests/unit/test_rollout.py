"""Canary rollouts on real runs: a healthy canary reaches 100%, a broken one is rolled back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
from langchain_core.runnables import RunnableConfig
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.checkpoint.span_export import SqlSpanExporter
from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db import upgrade
from graphops.errors import ConflictError, InvalidInputError
from graphops.flags.evaluate import evaluate
from graphops.flags.model import Flag
from graphops.flags.resolver import Flags
from graphops.flags.store_sql import SqlFlagStore
from graphops.observe import Telemetry
from graphops.observe.metrics import Metrics
from graphops.policies import Ops
from graphops.rollout.checks import Arm, decide
from graphops.rollout.controller import Controller
from graphops.rollout.feedback import Feedback
from graphops.rollout.model import Rollout
from graphops.rollout.store import SqlRollouts
from graphops.runtime import run_scope
from tests.integration.support import private_database


class State(TypedDict, total=False):
    question: str
    answer: str


class World:
    """A graph whose runs land in a SQLite span store, a flag table, and a controller."""

    def __init__(self, url: str, broken: bool = False) -> None:
        self.flags = SqlFlagStore(url)
        self.spans = SqlSpanStore(url)
        self.controller = Controller(self.flags, SqlRollouts(url), self.spans)
        self.flags.put(Flag("answer", {"v1": 1, "v2": 2}, {"v1": 100, "v2": 0}, "v1"), actor="ci")
        telemetry = Telemetry(
            exporters=[SimpleSpanProcessor(SqlSpanExporter(self.spans))],
            metrics=Metrics(CollectorRegistry()),
        )
        self.users = 0
        self.broken = broken

        def answer(state: State, config: RunnableConfig) -> State:
            scope = run_scope(config)
            assert scope is not None
            if self.broken and scope.variants["answer"].variant == "v2":
                raise RuntimeError("the canary's prompt breaks the parser")
            return {"answer": "ok"}

        self.app = build_observed_graph(
            {"answer": answer},
            state_schema=State,
            ops=Ops(
                telemetry=telemetry,
                flags=Flags(self.flags, refresh_s=0, metrics=Metrics(CollectorRegistry())),
            ),
            name="canaried",
        )

    def runs(self, count: int) -> int:
        """``count`` runs by new users; returns how many failed."""
        failed = 0
        for _ in range(count):
            self.users += 1
            config: Any = {"metadata": {"user": f"user-{self.users}"}}
            try:
                self.app.invoke({"question": "q"}, config)
            except RuntimeError:
                failed += 1
        return failed

    def actions(self) -> list[str]:
        return [c.action for c in reversed(self.flags.history("answer", limit=100))]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test on a SQLite file, and on a private Postgres database (dropped after)."""
    if request.param == "sqlite":
        made = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
        upgrade(made)
        yield made
        return
    with private_database("graphops_rollout") as (_, name):
        made = f"postgresql://postgres@127.0.0.1:5432/{name}"
        upgrade(made)
        yield made


def test_a_healthy_canary_reaches_100_percent_step_by_step(url: str) -> None:
    world = World(url)
    rollout = world.controller.start("answer", "v2", steps=(10, 50, 100), min_runs=15)
    assert (rollout.share, rollout.control, rollout.canary) == (10, "v1", "v2")
    for _ in range(60):
        world.runs(25)
        rollout, _ = world.controller.look("answer")
        if rollout.state != "running":
            break
    assert rollout.state == "promoted"
    flag = world.flags.get("answer")
    assert flag is not None and flag.weights["v2"] == 100 and flag.default == "v2"
    assert world.actions() == ["set", "rollout-start", "rollout-advance", "rollout-promote"]
    [promoted] = [c for c in world.flags.history("answer") if c.action == "rollout-promote"]
    assert promoted.detail["runs"]["canary"] >= 15 and "errors" in promoted.detail["checks"]


def test_a_broken_canary_is_rolled_back_and_new_runs_get_the_control(url: str) -> None:
    world = World(url, broken=True)
    world.controller.start("answer", "v2", steps=(20, 50, 100), min_runs=15)
    rollout = None
    for _ in range(40):
        world.runs(20)
        rollout, _ = world.controller.look("answer")
        if rollout.state != "running":
            break
    assert rollout is not None and rollout.state == "rolled_back"
    [back] = [c for c in world.flags.history("answer") if c.action == "rollout-rollback"]
    errors = back.detail["checks"]["errors"]
    assert errors["regressed"] and errors["canary"] == 1.0 and errors["control"] == 0.0
    assert back.detail["from_share"] == 20
    flag = world.flags.get("answer")
    assert flag is not None and dict(flag.weights) == {"v1": 100, "v2": 0}
    assert all(evaluate(flag, {"user": f"new-{i}"}).variant == "v1" for i in range(200))
    assert world.runs(50) == 0  # new runs get the control: none fails
    assert world.controller.look("answer") == (rollout, None)  # finished: nothing to do


def test_two_controllers_never_take_the_same_step_twice(url: str) -> None:
    world = World(url)
    other = Controller(world.flags, SqlRollouts(url), world.spans)
    world.controller.start("answer", "v2", steps=(20, 50, 100), min_runs=10)
    done = threading.Event()

    def keep_looking(controller: Controller) -> None:
        while not done.is_set():
            rollout, _ = controller.look("answer")
            if rollout.state != "running":
                done.set()

    lookers = [threading.Thread(target=keep_looking, args=(c,)) for c in (world.controller, other)]
    for looker in lookers:
        looker.start()
    for _ in range(80):
        if done.is_set():
            break
        world.runs(10)
    done.set()
    for looker in lookers:
        looker.join(timeout=60)
    moves = [c for c in reversed(world.flags.history("answer", limit=100)) if c.action != "set"]
    shares = [c.detail["rollout"]["share"] for c in moves]
    assert shares == [20, 50, 100], shares


def test_a_flag_changed_by_hand_ends_the_rollout_and_stays_as_set(url: str) -> None:
    world = World(url)
    world.controller.start("answer", "v2", min_runs=10)
    flag = world.flags.get("answer")
    assert flag is not None
    by_hand = world.flags.put(
        Flag("answer", {"v1": 1, "v2": 2}, {"v1": 100, "v2": 0}, "v1"), actor="ana"
    )
    rollout, decision = world.controller.look("answer")
    assert rollout.state == "aborted" and decision is None
    after = world.flags.get("answer")
    assert after is not None and dict(after.weights) == dict(by_hand.weights)
    assert world.actions()[-1] == "rollout-abort"


def test_promote_and_abort_by_hand_and_bad_starts(url: str) -> None:
    world = World(url)
    with pytest.raises(InvalidInputError, match="no variant 'v9'"):
        world.controller.start("answer", "v9")
    with pytest.raises(InvalidInputError, match="no flag 'other'"):
        world.controller.start("other", "v2")
    with pytest.raises(InvalidInputError, match="already has 100%"):
        world.controller.start("answer", "v1")
    rollout = world.controller.start("answer", "3", steps=(50, 100), min_runs=10)
    assert rollout.canary == "v3" and world.flags.get("answer").variants["v3"] == 3  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="already has a running rollout"):
        world.controller.start("answer", "v2")
    aborted = world.controller.abort("answer", actor="ana", reason="not today")
    assert aborted.state == "aborted" and world.flags.get("answer").weights["v3"] == 0  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError, match="is aborted, not running"):
        world.controller.promote("answer")
    again = world.controller.start("answer", "v2", steps=(50, 100), min_runs=10)
    promoted = world.controller.promote("answer", actor="ana")
    assert again.state == "running" and promoted.state == "promoted"
    flag = world.flags.get("answer")
    assert flag is not None and flag.weights["v2"] == 100 and flag.default == "v2"
    world.flags.put(Flag("answer", {"v1": 1, "v2": 2}, {"v1": 50, "v2": 50}, "v1"), actor="ana")
    with pytest.raises(InvalidInputError, match="is split"):
        world.controller.start("answer", "v2")


def test_identical_variants_are_rolled_back_at_most_alpha_of_the_time() -> None:
    """300 simulated rollouts of two identical variants, a look after every 40 runs."""
    rng = np.random.default_rng(11)
    rolled_back = promoted = 0
    trials = 300
    for _ in range(trials):
        rollout = Rollout("answer", "v1", "v2", steps=(5, 25, 50, 100), min_runs=50)
        arms = _empty()
        for _look in range(80):
            for _run in range(40):
                arm = arms["canary"] if rng.random() < rollout.share / 100 else arms["control"]
                arm["runs"] += 1
                arm["errors"] += bool(rng.random() < 0.05)
                arm["seconds"].append(float(rng.lognormal(0.0, 0.3)))
            control, canary = (
                Arm(a["runs"], a["errors"], 0, tuple(a["seconds"])) for a in arms.values()
            )
            decision = decide(rollout, control, canary, now_ns=0)
            if decision.action == "rollback":
                rolled_back += 1
                break
            if decision.action == "promote":
                promoted += 1
                break
            if decision.action == "advance":  # a new step: a new window
                rollout = Rollout(
                    "answer", "v1", "v2", steps=rollout.steps, step=rollout.step + 1, min_runs=50
                )
                arms = _empty()
    rate = rolled_back / trials
    tolerance = 3 * (0.05 * 0.95 / trials) ** 0.5
    assert rate <= 0.05 + tolerance, rate
    assert promoted >= 0.9 * trials  # and identical canaries do get through


def _empty() -> dict[str, dict[str, Any]]:
    return {name: {"runs": 0, "errors": 0, "seconds": []} for name in ("control", "canary")}


def test_a_canary_failing_half_its_runs_is_caught_within_its_first_step() -> None:
    """What the demo in docs/rollout.md showed before the rate test had a floor on its scale."""
    rollout = Rollout("answer", "v1", "v2", steps=(10, 50, 100), min_runs=20)
    decision = decide(rollout, Arm(200, 0, 0, (1.0,) * 200), Arm(23, 11, 0, (1.0,) * 23), now_ns=0)
    assert decision.action == "rollback" and "errors" in decision.reason


def test_a_canary_scored_worse_is_rolled_back_on_quality(url: str) -> None:
    """No error, no slowness: only the feedback says the canary answers worse."""
    world = World(url)
    feedback = Feedback(url)
    world.controller.start("answer", "v2", steps=(30, 100), min_runs=12)
    rollout = None
    for _ in range(30):
        world.runs(12)
        for run in world.spans.runs(limit=12):
            variant = next(v for v in run.variants if v.startswith("answer="))
            good = 0.9 if variant == "answer=v1" else 0.3
            feedback.record(run.trace_id, good, actor="judge")
        rollout, _ = world.controller.look("answer")
        if rollout.state != "running":
            break
    assert rollout is not None and rollout.state == "rolled_back"
    [back] = [c for c in world.flags.history("answer") if c.action == "rollout-rollback"]
    quality = back.detail["checks"]["quality"]
    assert quality["regressed"] and quality["control"] > quality["canary"]
    assert not back.detail["checks"]["errors"]["regressed"]


def test_feedback_takes_a_trace_or_a_thread_and_refuses_bad_scores(url: str) -> None:
    world = World(url)
    world.app.invoke({"question": "q"}, {"configurable": {"thread_id": "t-1"}})
    [run] = world.spans.runs(limit=1)
    feedback = Feedback(url)
    assert feedback.record(run.trace_id, 1, actor="ana") == run.trace_id
    assert feedback.record("t-1", 0.25, actor="bob", comment="vague") == run.trace_id
    assert feedback.scores([run.trace_id]) == {run.trace_id: [1.0, 0.25]}
    for score, message in (
        (1.5, "from 0"),
        (-0.1, "from 0"),
        (float("nan"), "a number"),
        (True, "a number"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            feedback.record(run.trace_id, score, actor="ana")  # type: ignore[arg-type]
    for name in ("nothing", "", "a\x00b"):
        with pytest.raises(InvalidInputError, match="run"):
            feedback.record(name, 0.5, actor="ana")
    assert feedback.scores([run.trace_id]) == {run.trace_id: [1.0, 0.25]}  # nothing more
