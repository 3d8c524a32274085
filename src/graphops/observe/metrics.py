"""Prometheus metrics: one :class:`Metrics` object per registry.

Names start with ``graphops_``, plus the two GenAI client metrics
(``gen_ai_client_token_usage``, ``gen_ai_client_operation_duration_seconds``; label
names are the convention's attributes with ``_`` for ``.``). Labels stay
low-cardinality: users appear only as a *user class* (``anonymous``, ``user`` or a
class you assign), never as raw ids.

Metrics for later steps (cache, variants) are registered now so dashboards and
alert rules can be written against stable names.

Multiprocess mode (several workers behind one port): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before the workers start; every
process writes its samples there and :func:`metrics_app` / :func:`start_metrics_server`
expose the sum over processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_asgi_app,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "Metrics",
    "default_metrics",
    "exposition_registry",
    "metrics_app",
    "start_metrics_server",
]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
# the GenAI convention's advisory buckets
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
_OP_DURATION = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)


class Metrics:
    """Every collector graphops updates, on one registry (the global one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.runs = Counter("graphops_runs", "Graph runs.", ["graph", "status"], registry=r)
        self.run_duration = Histogram(
            "graphops_run_duration_seconds",
            "Graph run wall time.",
            ["graph", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.variant_runs = Counter(
            "graphops_variant_runs",
            "Graph runs per flag variant they were given (a run counts once per flag).",
            ["graph", "flag", "variant", "status"],
            registry=r,
        )
        self.variant_run_duration = Histogram(
            "graphops_variant_run_duration_seconds",
            "Graph run wall time per flag variant: a canary's latency next to the control's.",
            ["graph", "flag", "variant", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.node_duration = Histogram(
            "graphops_node_duration_seconds",
            "Node execution wall time.",
            ["graph", "node", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.llm_calls = Counter(
            "graphops_llm_calls", "LLM calls.", ["provider", "model", "status"], registry=r
        )
        self.tokens = Counter(
            "graphops_tokens", "Tokens used.", ["model", "type", "user_class"], registry=r
        )
        self.cost = Counter(
            "graphops_cost_usd", "Cost of LLM calls in USD.", ["model", "user_class"], registry=r
        )
        self.retrieval_duration = Histogram(
            "graphops_retrieval_duration_seconds",
            "Retriever wall time.",
            ["source", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "GenAI: tokens per operation.",
            [
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_token_type",
            ],
            buckets=_TOKENS,
            registry=r,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI: operation duration.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            buckets=_OP_DURATION,
            registry=r,
        )
        self.spans_dropped = Counter(
            "graphops_spans_dropped",
            "Spans dropped because the export queue was full.",
            registry=r,
        )
        # counted by the guard and cache steps (graphops.steps)
        self.cache_requests = Counter(
            "graphops_cache_requests", "Cache lookups.", ["layer", "result"], registry=r
        )
        self.cache_verifier_rejections = Counter(
            "graphops_cache_verifier_rejections",
            "Semantic candidates the verifier vetoed, by kind of conflict.",
            ["reason"],
            registry=r,
        )
        self.cache_tokens_saved = Counter(
            "graphops_cache_tokens_saved",
            "Tokens the runs that made cached answers used, saved again by each hit.",
            ["tier"],
            registry=r,
        )
        self.cache_cost_saved = Counter(
            "graphops_cache_cost_saved",
            "What the tokens saved by hits cost (CachePolicy.tokens_cost per token).",
            ["tier"],
            registry=r,
        )
        self.guard_decisions = Counter(
            "graphops_guard_decisions", "Guard outcomes.", ["outcome", "reason"], registry=r
        )
        self.limiter_unavailable = Counter(
            "graphops_limiter_unavailable",
            "Admissions the limit store did not answer in time, by the fail mode applied.",
            ["mode"],
            registry=r,
        )
        self.quota_settled = Counter(
            "graphops_quota_settled_tokens",
            "Tokens charged (direction=charge) or refunded (direction=refund) at settlement.",
            ["direction"],
            registry=r,
        )
        # counted by the budget, the resilient chat model and the degradation ladder
        # (graphops.resilience, graphops.models.resilient)
        self.budget_exhausted = Counter(
            "graphops_budget_exhausted",
            "Node attempts stopped because the run's deadline or the node's stage limit passed.",
            ["graph", "node"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "graphops_breaker_state",
            "A provider's circuit breaker as this process last saw it: "
            "0 closed, 1 half-open, 2 open.",
            ["provider"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "graphops_breaker_transitions",
            "Circuit breaker state changes seen by this process.",
            ["provider", "from_state", "to_state"],
            registry=r,
        )
        self.llm_retries = Counter(
            "graphops_llm_retries",
            "Retries of failed LLM calls (outcome=retried), and retries not made "
            "(outcome=budget: the retry budget was spent; deadline: no time left).",
            ["provider", "outcome"],
            registry=r,
        )
        self.llm_fallbacks = Counter(
            "graphops_llm_fallbacks",
            "Calls a provider did not answer that went to the next one in the chain.",
            ["from_provider", "to_provider", "reason"],
            registry=r,
        )
        self.degraded = Counter(
            "graphops_degraded",
            "Runs answered on the degradation ladder, by level and reason.",
            ["graph", "level", "reason"],
            registry=r,
        )
        self.prompt_stale = Counter(
            "graphops_prompt_stale",
            "Prompt lookups served from the last good versions because the registry failed.",
            ["prompt"],
            registry=r,
        )
        self.flag_evaluations = Counter(
            "graphops_flag_evaluations",
            "Flag evaluations, by flag, the variant given and why (OpenFeature's reasons).",
            ["flag", "variant", "reason"],
            registry=r,
        )
        self.flag_stale = Counter(
            "graphops_flag_stale",
            "Flag evaluations made on the last good flags because the flag store failed.",
            ["flag"],
            registry=r,
        )


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide metrics on the global registry, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def exposition_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """What to expose: the sum over processes in multiprocess mode, else ``registry``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregated = CollectorRegistry()
        MultiProcessCollector(aggregated)  # type: ignore[no-untyped-call]
        return aggregated
    return registry if registry is not None else default_metrics().registry


def metrics_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving the Prometheus text exposition (mount it at ``/metrics``)."""
    return make_asgi_app(registry=exposition_registry(registry))


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> Any:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=exposition_registry(registry))
    return server
