"""The settle step: the run's usage, settled once.

It records what the run's LLM calls used (counted by the run scope as each
result arrived) in the scope's outcomes, as the scope closes, however the run
ended (normally, refused, an exception, an interrupt, cancelled); a scope is
settled once. When the guard reserved tokens under quotas, each reservation is
settled with the tokens really used: the difference is refunded or charged
(:meth:`graphops.limits.Limiter.settle_soon`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphops.limits.limiter import Admission, Limiter
from graphops.observe import semconv as sc
from graphops.runtime import RunScope
from graphops.steps.base import Step, StepResult
from graphops.steps.channel import Settlement

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics

__all__ = ["settle_scope", "settle_step"]


def settle_scope(scope: RunScope, limiter: Limiter | None = None) -> Settlement:
    """Settle ``scope`` (once: a second call returns the first settlement)."""
    done = scope.outcomes.get("settled")
    if done is None:
        usage = scope.usage
        done = {
            "llm_calls": usage.llm_calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
        }
        admitted = scope.admitted
        if limiter is not None and isinstance(admitted, Admission) and admitted.reservations:
            reserved = admitted.reservations[0].tokens
            done["quota"] = {"reserved": reserved, "used": usage.tokens}
            limiter.settle_soon(admitted, usage.tokens)
        scope.outcomes["settled"] = done
    return dict(done)  # type: ignore[return-value]


def settle_step(limiter: Limiter | None = None) -> Step:
    """Settlement as the last step run at the scope's close (with the guard's limiter)."""

    def settle(state: Any, scope: RunScope) -> StepResult:
        done = settle_scope(scope, limiter)
        attributes: dict[str, Any] = {
            sc.SETTLED_LLM_CALLS: done["llm_calls"],
            sc.SETTLED_INPUT_TOKENS: done["input_tokens"],
            sc.SETTLED_OUTPUT_TOKENS: done["output_tokens"],
        }
        quota = done.get("quota")
        if quota is not None:
            attributes[sc.QUOTA_RESERVED] = quota["reserved"]
            attributes[sc.QUOTA_SETTLED] = quota["used"] - quota["reserved"]
        return StepResult(done, attributes)

    return Step("settle", "settled", settle, _count)


def _count(result: StepResult, metrics: Metrics) -> None:
    quota = result.outcome.get("quota")
    if quota is None:
        return
    delta = quota["used"] - quota["reserved"]
    if delta:
        metrics.quota_settled.labels("charge" if delta > 0 else "refund").inc(abs(delta))
