"""The observed reference graph as the ``graphops`` command runs it (``ask`` and re-runs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from graphops.settings import Settings

__all__ = ["REFERENCE_GRAPH", "observed_reference"]

REFERENCE_GRAPH = "agentic_rag"
"""The name the reference graph's runs carry (``gen_ai.agent.name``): what the CLI re-runs."""


def observed_reference(
    settings: Settings, saver: Any, spans: Any
) -> tuple[Any, Callable[[Any], Any]]:
    """The CLI's telemetry and a builder of the observed reference graph on given deps.

    Spans go to ``spans`` (the tree printed after a run), the span store, and the
    exporters ``GRAPHOPS_TRACES_EXPORTER`` names; embeddings are wrapped so their
    calls are spans too (they fire no LangChain callbacks).
    """
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from graphops.builder import build_observed_graph
    from graphops.observe import Telemetry
    from graphops.observe.tracing import exporters_named
    from graphops.policies import CachePolicy, GuardPolicy, Ops
    from graphs.agentic_rag import RagDeps, build_agentic_rag

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
            ops=Ops(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry),
            checkpointer=saver,
            name=REFERENCE_GRAPH,
        )

    return telemetry, app_on
