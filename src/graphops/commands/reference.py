"""The observed reference graph as the ``graphops`` command runs it (``ask`` and re-runs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphops.settings import Settings

if TYPE_CHECKING:
    from graphops.policies import GuardPolicy

__all__ = ["REFERENCE_GRAPH", "observed_reference", "reference_guard"]

REFERENCE_GRAPH = "agentic_rag"
"""The name the reference graph's runs carry (``gen_ai.agent.name``): what the CLI re-runs."""


def reference_guard(settings: Settings) -> GuardPolicy:
    """The guard the CLI runs the reference graph with: the settings' limits (docs/limits.md).

    A token quota reserves the graph's per-run ceiling unless the limits file sets
    ``token_estimate``.
    """
    from graphops.limits.config import guard_policy
    from graphs.agentic_rag import token_ceiling

    return guard_policy(settings, token_estimate=token_ceiling(settings))


def observed_reference(
    settings: Settings,
    saver: Any,
    spans: Any,
    guard: GuardPolicy | None = None,
    *,
    degrade: bool = True,
) -> tuple[Any, Callable[[Any], Any]]:
    """The CLI's telemetry and a builder of the observed reference graph on given deps.

    Spans go to ``spans`` (the tree printed after a run), the span store, and the
    exporters ``GRAPHOPS_TRACES_EXPORTER`` names; embeddings are wrapped so their
    calls are spans too (they fire no LangChain callbacks). ``guard`` defaults to
    :func:`reference_guard`. ``degrade=False`` (re-runs) leaves the ladder out: a
    re-run is for seeing what fails, so it fails rather than answer degraded, and
    it runs the graph rather than answer from the cache.
    """
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from graphops.builder import build_observed_graph
    from graphops.flags.factory import flags_for
    from graphops.observe import Telemetry
    from graphops.observe.tracing import exporters_named
    from graphs.agentic_rag import RagDeps, build_agentic_rag, reference_cache, reference_ops

    policy = guard if guard is not None else reference_guard(settings)
    flags = flags_for(settings)  # a flag named like a prompt picks its version

    telemetry = Telemetry(
        exporters=[
            SimpleSpanProcessor(spans),
            saver.span_processor(),
            *exporters_named(settings.traces_exporter),
        ],
        capture_content=settings.capture_content,
    )

    def app_on(deps: RagDeps) -> Any:
        embeddings = telemetry.embeddings(deps.retriever.embeddings)  # type: ignore[attr-defined]
        retriever = deps.retriever.model_copy(update={"embeddings": embeddings})
        return build_observed_graph(
            build_agentic_rag(dataclasses.replace(deps, retriever=retriever)),
            ops=_ladder_or_not(
                reference_ops(
                    guard=policy,
                    embeddings=embeddings,
                    settings=settings,
                    telemetry=telemetry,
                    cache=reference_cache(deps, settings, embeddings)
                    if degrade and settings.cache != "off"
                    else None,
                    flags=flags,
                ),
                degrade,
            ),
            checkpointer=saver,
            name=REFERENCE_GRAPH,
        )

    return telemetry, app_on


def _ladder_or_not(ops: Any, degrade: bool) -> Any:
    return ops if degrade else dataclasses.replace(ops, degrade=None)
