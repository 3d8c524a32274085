"""The rollout controller: moves a flag's weights step by step, and back at the first regression.

:meth:`Controller.start` puts the canary at the first step's share; each
:meth:`Controller.look` reads both arms from the span store
(:mod:`graphops.rollout.observed`), decides (:func:`graphops.rollout.checks.decide`)
and, when the decision changes something, writes the flag first (with the
version it expects) and the rollout after. The flag write carries the decision's
numbers into the audit log (actions ``rollout-start``, ``rollout-advance``,
``rollout-rollback``, ``rollout-promote``, ``rollout-abort``), and it is where
two controllers meet: only one can move the flag from a version, the other's
look ends with nothing written. A look that only waits writes nothing.

A flag changed by hand while its rollout runs (its version is not the one the
controller last wrote, and its last change is not a rollout's) ends the rollout
as aborted, leaving the flag as the person set it: the controller never fights
an operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from graphops.checkpoint.span_store import SqlSpanStore
from graphops.errors import ConflictError, InvalidInputError
from graphops.flags.model import Flag, check_variant_name
from graphops.flags.store import FlagStore
from graphops.rollout.checks import Decision, decide
from graphops.rollout.model import DEFAULT_STEPS, Rollout
from graphops.rollout.observed import observe
from graphops.rollout.store import SqlRollouts

__all__ = ["Controller", "canary_variant"]

_log = logging.getLogger("graphops.rollout")
_IN_FLIGHT_S = 60.0  # how long another controller's flag write may wait for its rollout row


def canary_variant(to: str) -> tuple[str, int | None]:
    """``--to 3`` is variant ``v3`` (prompt version 3); any other name is that variant."""
    text = to.strip()
    if text.isdigit() and int(text) > 0:
        return f"v{int(text)}", int(text)
    return check_variant_name(text), None


class Controller:
    """Start, look at, promote and abort rollouts (see the module docstring)."""

    def __init__(
        self,
        flags: FlagStore,
        rollouts: SqlRollouts,
        spans: SqlSpanStore,
        *,
        actor: str = "graphops-rollout",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.flags = flags
        self.rollouts = rollouts
        self.spans = spans
        self.actor = actor
        self._clock = clock

    # ------------------------------------------------------------------ start
    def start(
        self,
        name: str,
        to: str,
        *,
        steps: tuple[int, ...] = DEFAULT_STEPS,
        min_runs: int = 100,
        interval_s: float = 0.0,
        alpha: float = 0.05,
        graph: str | None = None,
        actor: str | None = None,
    ) -> Rollout:
        """Send ``steps[0]`` percent of runs to variant ``to`` of flag ``name``."""
        flag = self._flag(name)
        running = self.rollouts.get(name)
        if running is not None and running[0].state == "running":
            raise ConflictError(
                f"flag {name!r} already has a running rollout to {running[0].canary!r}: "
                f"`graphops rollout abort {name}` ends it"
            )
        if flag.killed:
            raise InvalidInputError(f"flag {name!r} is killed: revive it before a rollout")
        whole = [v for v, w in flag.weights.items() if w == 100]
        if not whole:
            split = ", ".join(f"{v}={w}" for v, w in flag.weights.items() if w)
            raise InvalidInputError(
                f"flag {name!r} is split ({split}): a rollout starts from one variant at 100%"
            )
        control = whole[0]
        canary, version = canary_variant(to)
        if canary == control:
            raise InvalidInputError(f"variant {canary!r} already has 100% of flag {name!r}")
        variants = dict(flag.variants)
        if canary not in variants:
            if version is None:
                raise InvalidInputError(
                    f"flag {name!r} has no variant {canary!r} (its variants: {', '.join(variants)})"
                )
            variants[canary] = version
        now = self._clock()
        rollout = Rollout(
            name, control, canary, steps=steps, min_runs=min_runs, interval_s=interval_s,
            alpha=alpha, graph=graph, started_ns=now, step_started_ns=now,
        )  # fmt: skip
        moved = _weights(flag, rollout, variants)
        detail = {"rollout": _summary(rollout), "reason": f"canary {canary} at {rollout.share}%"}
        stored = self.flags.put(
            moved, actor=actor or self.actor, action="rollout-start", expected=flag.version,
            detail=detail,
        )  # fmt: skip
        return self.rollouts.save(rollout, stored.version)

    # ------------------------------------------------------------------ looks
    def look(self, name: str) -> tuple[Rollout, Decision | None]:
        """One look at ``name``'s rollout: advance, wait, roll back or promote.

        Returns the rollout as it is after the look and the decision (None when
        the rollout is not running, or another controller moved it first).
        """
        rollout, written = self._rollout(name)
        if rollout.state != "running":
            return rollout, None
        flag = self._flag(name)
        if flag.version != written:
            if self._by_a_controller(name):
                # another controller's write, its rollout row not saved yet: its move
                return self._rollout(name)[0], None
            return self._abandon(rollout, flag), None
        now = self._clock()
        decision = self._decision(rollout, now)
        if decision.action == "wait":
            return rollout, decision
        if decision.action == "rollback":
            after = replace(rollout, state="rolled_back")
        elif decision.action == "promote":
            after = replace(rollout, state="promoted")
        else:
            after = replace(rollout, step=rollout.step + 1, step_started_ns=now)
        try:
            return self._move(rollout, after, flag, decision.as_json(), self.actor), decision
        except ConflictError as exc:  # another controller (or person) moved it first
            _log.info("rollout of %s: %s; this look changes nothing", name, exc)
            return self._rollout(name)[0], None

    def look_all(self) -> list[tuple[Rollout, Decision | None]]:
        """One look at every running rollout."""
        return [
            self.look(rollout.flag)
            for rollout, _ in self.rollouts.all()
            if rollout.state == "running"
        ]

    def run(self, every_s: float, stop: Callable[[], bool]) -> None:
        """Look at every running rollout every ``every_s`` seconds until ``stop()``."""
        while not stop():
            self.look_all()
            deadline = time.monotonic() + every_s
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.2, every_s))

    # ------------------------------------------------------------------ by hand
    def promote(self, name: str, *, actor: str | None = None, reason: str = "") -> Rollout:
        """Give the canary 100% now, whatever the numbers (an operator's call)."""
        rollout, flag = self._running(name)
        detail = {"action": "promote", "reason": reason or "promoted by hand"}
        return self._move(rollout, replace(rollout, state="promoted"), flag, detail, actor)

    def abort(self, name: str, *, actor: str | None = None, reason: str = "") -> Rollout:
        """Send every run back to the control now (the canary to 0%)."""
        rollout, flag = self._running(name)
        detail = {"action": "abort", "reason": reason or "aborted by hand"}
        return self._move(rollout, replace(rollout, state="aborted"), flag, detail, actor)

    def status(self, name: str) -> tuple[Rollout, Decision | None]:
        """The rollout and what a look would decide now (nothing is written)."""
        rollout, _ = self._rollout(name)
        if rollout.state != "running":
            return rollout, None
        return rollout, self._decision(rollout, self._clock())

    # ------------------------------------------------------------------ inside
    def _decision(self, rollout: Rollout, now: int) -> Decision:
        """What a look at ``rollout`` decides now, on the span store's runs of its step."""
        seen = observe(self.spans, rollout)
        return decide(rollout, seen.control, seen.canary, now_ns=now)

    def _move(
        self,
        before: Rollout,
        after: Rollout,
        flag: Flag,
        detail: Mapping[str, Any],
        actor: str | None,
    ) -> Rollout:
        moved = _weights(flag, after)
        if after.state == "promoted":
            moved = replace(moved, default=after.canary)
        action = {
            "running": "rollout-advance",
            "rolled_back": "rollout-rollback",
            "promoted": "rollout-promote",
            "aborted": "rollout-abort",
        }[after.state]
        stored = self.flags.put(
            moved,
            actor=actor or self.actor,
            action=action,
            expected=flag.version,
            detail={**detail, "rollout": _summary(after), "from_share": before.share},
        )
        return self.rollouts.save(after, stored.version)

    def _by_a_controller(self, name: str) -> bool:
        """Whether the flag's last change is a rollout's own, made moments ago.

        Another controller writes the flag, then the rollout row: between the
        two its move is in flight and is not this look's to judge. A rollout's
        write older than :data:`_IN_FLIGHT_S` whose row was never saved is a
        controller that died half-way; like a person's change, it ends the rollout.
        """
        last = self.flags.history(name, limit=1)
        if not last or not last[0].action.startswith("rollout-"):
            return False
        return (self._clock() - last[0].at_ns) / 1e9 < _IN_FLIGHT_S

    def _abandon(self, rollout: Rollout, flag: Flag) -> Rollout:
        """The flag was changed by hand: end the rollout, leave the flag as it is."""
        _log.warning(
            "flag %s was changed outside its rollout: the rollout is aborted, the flag stays",
            rollout.flag,
        )
        detail = {"reason": "the flag was changed by hand during the rollout"}
        after = replace(rollout, state="aborted")
        stored = self.flags.put(
            flag, actor=self.actor, action="rollout-abort", expected=flag.version,
            detail={**detail, "rollout": _summary(after)},
        )  # fmt: skip
        return self.rollouts.save(after, stored.version)

    def _flag(self, name: str) -> Flag:
        flag = self.flags.get(name)
        if flag is None:
            raise InvalidInputError(f"no flag {name!r}: `graphops flags set` makes one")
        return flag

    def _rollout(self, name: str) -> tuple[Rollout, int]:
        found = self.rollouts.get(name)
        if found is None:
            raise InvalidInputError(f"flag {name!r} has no rollout: `graphops rollout start`")
        return found

    def _running(self, name: str) -> tuple[Rollout, Flag]:
        rollout, written = self._rollout(name)
        if rollout.state != "running":
            raise InvalidInputError(f"the rollout of {name!r} is {rollout.state}, not running")
        flag = self._flag(name)
        if flag.version != written:
            raise ConflictError(
                f"flag {name!r} changed outside its rollout (version {flag.version}, the "
                f"rollout wrote {written}): the next look aborts it"
            )
        return rollout, flag


def _weights(flag: Flag, rollout: Rollout, variants: Mapping[str, Any] | None = None) -> Flag:
    """``flag`` (with ``variants``, when the rollout added its canary) at the rollout's share."""
    variants = dict(flag.variants if variants is None else variants)
    weights = dict.fromkeys(variants, 0)
    weights[rollout.canary] = rollout.share
    weights[rollout.control] = 100 - rollout.share
    return replace(flag, variants=variants, weights=weights)


def _summary(rollout: Rollout) -> dict[str, Any]:
    return {
        "control": rollout.control,
        "canary": rollout.canary,
        "steps": list(rollout.steps),
        "share": rollout.share,
        "state": rollout.state,
        "min_runs": rollout.min_runs,
        "alpha": rollout.alpha,
    }
