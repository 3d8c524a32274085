"""The guard step: the first thing a run meets.

Today it validates the input question (:class:`~graphops.policies.GuardPolicy`);
a refusal ends the run cleanly, before any node of the user's runs, with the
reason in the ops channel. Its decision is also the run's admission record
(``scope.admission``) and is counted in ``graphops_guard_decisions_total``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from graphops.errors import InvalidInputError
from graphops.observe import semconv as sc
from graphops.policies import GuardPolicy
from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult
from graphops.validation import validate_question

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["guard_step"]

_MISSING = object()


def _field(state: Any, key: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(key, _MISSING)
    return getattr(state, key, _MISSING)


def guard_step(policy: GuardPolicy) -> Step:
    """The guard as a step: allowed, or refused with ``invalid_input`` and why."""

    def guard(state: Any, scope: RunScope) -> StepResult:
        question = _field(state, policy.question_key)
        problem: str | None = None
        if question is not _MISSING and question is not None:
            if not isinstance(question, str):
                problem = (
                    f"the {policy.question_key!r} input is {type(question).__name__}, not text"
                )
            else:
                try:
                    validate_question(question, policy.max_question_chars)
                except InvalidInputError as exc:
                    problem = str(exc)
        outcome: dict[str, Any]
        if problem is None:
            outcome = {"outcome": "allowed", "reason": None, "retry_after_s": None}
        else:
            outcome = {
                "outcome": "refused",
                "reason": "invalid_input",
                "message": problem,
                "retry_after_s": None,
            }
        scope.admission = outcome
        return StepResult(
            outcome,
            {sc.GUARD_OUTCOME: outcome["outcome"]},
            stop="refused" if problem is not None else None,
        )

    return Step("guard", "guard", guard, _count)


def _count(result: StepResult, metrics: Metrics) -> None:
    outcome = result.outcome
    metrics.guard_decisions.labels(outcome["outcome"], outcome.get("reason") or "").inc()
