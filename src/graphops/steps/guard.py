"""The guard step: the first thing a run meets.

It checks the input question (:meth:`GuardPolicy.input_problem`), then asks the
limiter (:class:`~graphops.limits.Limiter`) to admit the run against every
request limit and token quota that applies to it, in one decision. A refusal
ends the run before any node of the user's runs: the reason, the retry-after
and the limit are in the ops channel and on the step's span (an event), counted
in ``graphops_guard_decisions_total{outcome,reason}`` and logged once. The
decision is also the run's admission record (``scope.admission``); the
limiter's own record (its reservations) waits in the scope for the settle step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from graphops.errors import RefusedError
from graphops.limits.limiter import Admission
from graphops.observe import semconv as sc
from graphops.policies import GuardPolicy
from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["guard_step", "question_of"]

_log = logging.getLogger("graphops.guard")
_MISSING = object()


def _field(state: Any, key: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(key, _MISSING)
    return getattr(state, key, _MISSING)


def question_of(state: Any, policy: GuardPolicy) -> Any:
    """The run's question: ``question_key``, else the last user message's text (or _MISSING)."""
    question = _field(state, policy.question_key)
    if (question is _MISSING or question is None) and policy.messages_key is not None:
        messages = _field(state, policy.messages_key)
        if isinstance(messages, list | tuple) and messages:
            last = messages[-1]
            if getattr(last, "type", None) == "human":
                return getattr(last, "text", last.content)
        return _MISSING
    return question


def guard_step(policy: GuardPolicy) -> Step:
    """The guard as a step: allowed, or refused with a reason (see the module docstring).

    It counts in the policy's own limiter and bulkhead (:attr:`GuardPolicy.limiter`,
    :attr:`GuardPolicy.gate`), which ``settle_step(policy.limiter)`` settles with.
    """
    limiter = policy.limiter

    def checked(state: Any) -> tuple[Any, StepResult | None]:
        question = question_of(state, policy)
        if question is _MISSING or question is None:
            return None, None
        problem = policy.input_problem(question)
        if problem is None:
            return question, None
        refusal = {
            "outcome": "refused",
            "reason": "invalid_input",
            "message": problem,
            "retry_after_s": None,
            "limit": None,
        }
        return question, _result(refusal)

    def reserve(question: Any) -> int:
        size = len(question.encode("utf-8", "surrogatepass")) if isinstance(question, str) else 0
        return size + policy.token_estimate

    gate = policy.gate

    def guard(state: Any, scope: RunScope) -> StepResult:
        question, result = checked(state)
        if result is None and limiter is not None and limiter.active:
            result = _admitted(scope, limiter.admit(scope.identity, reserve(question)))
        if _proceeds(result) and gate is not None:
            result = _gated(result, gate.enter(scope))
        return _decide(policy, scope, result)

    async def aguard(state: Any, scope: RunScope) -> StepResult:
        question, result = checked(state)
        if result is None and limiter is not None and limiter.active:
            result = _admitted(scope, await limiter.aadmit(scope.identity, reserve(question)))
        if _proceeds(result) and gate is not None:
            result = _gated(result, await gate.aenter(scope))
        return _decide(policy, scope, result)

    return Step("guard", "guard", guard, _count, arun=aguard)


def _proceeds(result: StepResult | None) -> bool:
    return result is None or result.stop is None


def _gated(result: StepResult | None, gated: dict[str, Any] | None) -> StepResult | None:
    """The bulkhead's word after the limiter's: a refusal, or a slot (unchecked: failed open)."""
    if gated is None:
        return result
    if gated["outcome"] == "refused":
        return _result(gated)
    _log.warning("bulkhead unchecked: run admitted (fail-open)", extra={"graphops": gated})
    return _unchecked()


def _unchecked() -> StepResult:
    outcome = {"outcome": "allowed", "reason": None, "retry_after_s": None, "unchecked": True}
    return StepResult(outcome, {sc.GUARD_OUTCOME: "allowed", sc.GUARD_UNCHECKED: True})


def _admitted(scope: RunScope, admission: Admission) -> StepResult | None:
    """None when the run is admitted (its reservations kept for settling), else the refusal."""
    if admission.allowed:
        scope.admitted = admission
        if not admission.unchecked:
            return None
        _log.warning(
            "limits unchecked: run admitted (fail-open)",
            extra={"graphops": {"run_id": scope.run_id, "message": admission.message}},
        )
        return _unchecked()
    refusal = {
        "outcome": "refused",
        "reason": admission.reason,
        "message": admission.message,
        "retry_after_s": admission.retry_after_s,
        "limit": dict(admission.limit) if admission.limit is not None else None,
    }
    return _result(refusal)


def _result(refusal: dict[str, Any]) -> StepResult:
    limit = refusal.get("limit") or {}
    attributes: dict[str, Any] = {
        sc.GUARD_OUTCOME: "refused",
        sc.GUARD_REASON: refusal["reason"],
    }
    if refusal["retry_after_s"] is not None:
        attributes[sc.GUARD_RETRY_AFTER] = refusal["retry_after_s"]
    if limit:
        attributes[sc.GUARD_LIMIT] = f"{limit.get('kind')}:{limit.get('per')}"
    if refusal["reason"] == "limiter_unavailable":
        attributes[sc.GUARD_UNCHECKED] = True
    return StepResult(
        refusal,
        attributes,
        stop="refused",
        events=((sc.GUARD_REFUSED_EVENT, attributes),),
    )


def _decide(policy: GuardPolicy, scope: RunScope, result: StepResult | None) -> StepResult:
    if result is None:
        result = StepResult(
            {"outcome": "allowed", "reason": None, "retry_after_s": None},
            {sc.GUARD_OUTCOME: "allowed"},
        )
    scope.admission = result.outcome
    if result.stop == "refused":
        outcome = result.outcome
        _log.warning(
            "run refused",
            extra={
                "graphops": {
                    "run_id": scope.run_id,
                    "trace_id": scope.trace_id,
                    "user": scope.identity.user,
                    "tenant": scope.identity.tenant,
                    "reason": outcome["reason"],
                    "retry_after_s": outcome["retry_after_s"],
                    "message": outcome["message"],
                }
            },
        )
        if policy.on_refusal == "raise":
            return dataclasses.replace(result, error=RefusedError(outcome))
    return result


def _count(result: StepResult, metrics: Metrics) -> None:
    outcome = result.outcome
    metrics.guard_decisions.labels(outcome["outcome"], outcome.get("reason") or "").inc()
    if outcome.get("unchecked") or outcome.get("reason") == "limiter_unavailable":
        mode = "closed" if outcome["outcome"] == "refused" else "open"
        metrics.limiter_unavailable.labels(mode).inc()
