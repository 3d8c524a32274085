"""The settle step: the run's usage, settled once.

It records what the run's LLM calls used (counted by the run scope as each
result arrived) in the ops channel, in the tail, when the run reaches it. A run
that ends elsewhere (refused, an exception, an interrupt, cancelled) is settled
when its scope closes instead; a scope is settled once either way. Token quotas,
which this will reconcile against a reservation, are not built yet.
"""

from __future__ import annotations

from typing import Any

from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult
from graphops.steps.channel import Settlement

__all__ = ["settle_scope", "settle_step"]


def settle_scope(scope: RunScope) -> Settlement:
    """Settle ``scope`` (once: a second call returns the first settlement)."""
    done = scope.outcomes.get("settled")
    if done is None:
        usage = scope.usage
        done = {
            "llm_calls": usage.llm_calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }
        scope.outcomes["settled"] = done
    return dict(done)  # type: ignore[return-value]


def settle_step() -> Step:
    """Settlement as the tail's last step."""

    def settle(state: Any, scope: RunScope) -> StepResult:
        return StepResult(settle_scope(scope))

    return Step("settle", "settled", settle)
