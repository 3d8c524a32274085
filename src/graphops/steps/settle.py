"""The settle step: the run's usage, settled once.

It records what the run's LLM calls used (counted by the run scope as each
result arrived) in the scope's outcomes, as the scope closes, however the run
ended (normally, refused, an exception, an interrupt, cancelled); a scope is
settled once. Token quotas, which this will reconcile against a reservation,
are not built yet.
"""

from __future__ import annotations

from typing import Any

from graphops.observe import semconv as sc
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
    """Settlement as the last step run at the scope's close."""

    def settle(state: Any, scope: RunScope) -> StepResult:
        done = settle_scope(scope)
        attributes = {
            sc.SETTLED_LLM_CALLS: done["llm_calls"],
            sc.SETTLED_INPUT_TOKENS: done["input_tokens"],
            sc.SETTLED_OUTPUT_TOKENS: done["output_tokens"],
        }
        return StepResult(done, attributes)

    return Step("settle", "settled", settle)
