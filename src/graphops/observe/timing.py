"""Per-node durations and token counts of one run, from LangChain callbacks.

A LangGraph node runs as a chain whose name equals its ``langgraph_node``
metadata; everything it calls inherits that metadata, which is how an LLM call's
tokens are charged to the node that made it. This is the seed's "print each node"
view made accurate; the telemetry pipeline turns the same events into spans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult

__all__ = ["NodeTimer", "NodeTiming"]


@dataclass
class NodeTiming:
    """One execution of one node."""

    node: str
    seconds: float = 0.0
    tokens: int = 0
    llm_calls: int = 0


class NodeTimer(BaseCallbackHandler):
    """Collects a :class:`NodeTiming` per node execution, in the order nodes started."""

    run_inline = True  # record on the event loop, in order, without a thread hop

    def __init__(self) -> None:
        self.timings: list[NodeTiming] = []
        self._open: dict[UUID, tuple[NodeTiming, float]] = {}
        self._llm_node: dict[UUID, NodeTiming] = {}
        self._by_node: dict[str, NodeTiming] = {}

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node is not None and kwargs.get("name") == node:
            timing = NodeTiming(node)
            self.timings.append(timing)
            self._by_node[node] = timing
            self._open[run_id] = (timing, time.perf_counter())

    def _close(self, run_id: UUID) -> None:
        opened = self._open.pop(run_id, None)
        if opened is not None:
            timing, started = opened
            timing.seconds = time.perf_counter() - started

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        timing = self._by_node.get((metadata or {}).get("langgraph_node", ""))
        if timing is not None:
            self._llm_node[run_id] = timing

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        timing = self._llm_node.pop(run_id, None)
        if timing is None:
            return
        timing.llm_calls += 1
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration):
                    usage = getattr(generation.message, "usage_metadata", None) or {}
                    timing.tokens += int(usage.get("total_tokens", 0))

    @property
    def total_tokens(self) -> int:
        """Tokens used by every LLM call of the run."""
        return sum(t.tokens for t in self.timings)
