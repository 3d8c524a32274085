"""The degradation ladder: what a run answers when a node still fails or runs out of time.

Installed as the graph's default LangGraph ``error_handler`` (a node with its own
handler keeps it), so it runs after LangGraph's retries, as a node of its own, with
the failed node's input state. It tries its levels in order and ends the run with
the first that gives an answer:

1. ``"stale"``: a stale cached answer (:meth:`graphops.CachePolicy.stale`; the
   cache tiers are not built yet, so today this level never answers);
2. ``"extractive"``: the sentences of the passages already retrieved that are most
   similar to the question, with their citations
   (:func:`~graphops.resilience.extractive.extractive_answer`; needs ``embeddings``);
3. ``"refusal"``: a polite template, which always answers.

The answer goes where the graph's own would (``answer_key``, ``sources_key``, an
AI message under ``messages_key``), and the run says so: ``degraded: {level,
reason, node, error}`` in the ops channel, a span event and attributes on the
handler's span, ``graphops_degraded_total{level, reason}`` and one warning log line.
A degraded answer is never stored in the cache (``cache_store`` skips it).

What does not degrade: graphops' own nodes, a refusal raised on purpose
(:class:`~graphops.errors.RefusedError`), a wrong call or input
(:class:`~graphops.errors.UserError`), and nodes given ``NodeOps(degrade=())``:
those errors fail the run as before.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import anyio.to_thread
from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import NodeError, NodeTimeoutError
from langgraph.graph import END
from langgraph.types import Command

from graphops._compat.langgraph import plain_node
from graphops.errors import (
    BudgetExhausted,
    ConfigurationError,
    ModelError,
    ProvidersUnavailable,
    RefusedError,
    UserError,
)
from graphops.observe import semconv as sc
from graphops.observe.handler import node_span
from graphops.resilience.extractive import Passage, extractive_answer
from graphops.runtime import RunScope
from graphops.steps.base import scope_for
from graphops.steps.channel import OPS_KEY
from graphops.steps.names import HEAD_NODE, TAIL_NODE
from graphops.steps.nodes import needs_tail

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from graphops.observe.metrics import Metrics

__all__ = ["DegradeLevel", "DegradePolicy", "degrade_handler", "documents_passages"]

_log = logging.getLogger("graphops.resilience")

DegradeLevel = Literal["stale", "extractive", "refusal"]
LEVELS: tuple[DegradeLevel, ...] = get_args(DegradeLevel)

Stale = Callable[[Any, RunScope], Mapping[str, Any] | None]
"""Asked for a stale cached answer: the state update it restores, or None."""


def documents_passages(state: Any) -> list[Passage]:
    """The passages of ``state["documents"]`` (dicts with ``id``, ``text``, ``title``), in order.

    The reference graph's shape, and the usual one of a RAG graph's state.
    """
    docs = (
        state.get("documents") if isinstance(state, Mapping) else getattr(state, "documents", None)
    )
    out = []
    for doc in docs or ():
        if isinstance(doc, Mapping) and isinstance(doc.get("text"), str):
            out.append(Passage(str(doc.get("id", "")), doc["text"], str(doc.get("title", ""))))
    return out


@dataclass(frozen=True)
class DegradePolicy:
    """The ladder's levels, and where in the state a degraded answer is read and written.

    ``levels`` is the default ladder; ``NodeOps(degrade=…)`` sets one node's own
    (``()``: that node fails instead). ``embeddings`` are what the extractive level
    ranks sentences with (without them it is skipped); ``passages(state)`` gives the
    passages already retrieved.
    """

    levels: tuple[DegradeLevel, ...] = LEVELS
    embeddings: Embeddings | None = field(default=None, compare=False)
    passages: Callable[[Any], Sequence[Passage]] = field(default=documents_passages, compare=False)
    question_key: str = "question"
    messages_key: str | None = "messages"
    answer_key: str = "answer"
    sources_key: str | None = "sources"
    max_sentences: int = 3
    refusal: str = "I'm sorry: I can't answer that right now. Please try again in a little while."

    def __post_init__(self) -> None:
        check_levels("DegradePolicy.levels", self.levels)
        object.__setattr__(self, "levels", tuple(self.levels))
        if self.embeddings is not None and not isinstance(self.embeddings, Embeddings):
            raise ConfigurationError(
                "DegradePolicy.embeddings takes LangChain Embeddings, not "
                f"{type(self.embeddings).__name__}"
            )
        if not self.refusal.strip():
            raise ConfigurationError("DegradePolicy.refusal must say something")

    def question(self, state: Any) -> str | None:
        """The run's question: ``question_key``, else the last human message."""
        question = _get(state, self.question_key)
        if isinstance(question, str) and question.strip():
            return question.strip()
        messages = _get(state, self.messages_key) if self.messages_key else None
        for message in reversed(messages or []):
            if isinstance(message, HumanMessage) and message.text.strip():
                return message.text.strip()
        return None

    def update(self, text: str, sources: Sequence[str]) -> dict[str, Any]:
        """The state update of a degraded answer."""
        update: dict[str, Any] = {self.answer_key: text}
        if self.sources_key is not None:
            update[self.sources_key] = list(sources)
        if self.messages_key is not None:
            update[self.messages_key] = [AIMessage(text)]
        return update


def _get(state: Any, key: str) -> Any:
    return state.get(key) if isinstance(state, Mapping) else getattr(state, key, None)


def check_levels(name: str, levels: object) -> None:
    """A ladder is a tuple of known levels, each once."""
    if not isinstance(levels, tuple | list) or any(level not in LEVELS for level in levels):
        raise ConfigurationError(f"{name} is {levels!r}: give a tuple of {', '.join(LEVELS)}")
    if len(set(levels)) != len(levels):
        raise ConfigurationError(f"{name} is {levels!r}: name each level once")


def reason_of(error: BaseException) -> str:
    """Why a node failed, in the words the ``reason`` label uses."""
    if isinstance(error, BudgetExhausted):
        return "budget_exhausted"
    if isinstance(error, NodeTimeoutError):
        return "node_timeout"
    if isinstance(error, ProvidersUnavailable):
        return "providers_unavailable"
    if isinstance(error, ModelError):
        return "model_error"
    return "error"


def degrade_handler(
    policy: DegradePolicy,
    ladders: Mapping[str, tuple[DegradeLevel, ...]],
    *,
    stale: Stale | None,
    graph: str,
    metrics: Metrics | None,
) -> Runnable[Any, Any]:
    """The error handler node: the ladder for the failed node (``ladders`` overrides per node)."""

    def ladder(error: NodeError) -> tuple[DegradeLevel, ...]:
        failed = error.error
        if error.node in (HEAD_NODE, TAIL_NODE) or isinstance(failed, RefusedError | UserError):
            raise failed
        levels = ladders.get(error.node, policy.levels)
        if not levels:
            raise failed
        return levels

    def handle(state: Any, config: RunnableConfig, error: NodeError) -> Command[Any]:
        levels = ladder(error)
        scope = scope_for(config, graph)
        for level in levels:
            update = answer(level, state, scope)
            if update is not None:
                return finish(config, scope, error, level, update)
        raise error.error

    async def ahandle(state: Any, config: RunnableConfig, error: NodeError) -> Command[Any]:
        # the ladder embeds sentences (CPU work, or a blocking client): off the event loop
        return await anyio.to_thread.run_sync(functools.partial(handle, state, config, error))

    def answer(level: DegradeLevel, state: Any, scope: RunScope) -> dict[str, Any] | None:
        if level == "stale":
            found = _stale(stale, state, scope)
            return None if found is None else dict(found)
        if level == "refusal":
            return policy.update(policy.refusal, ())
        question = policy.question(state)
        if policy.embeddings is None or question is None:
            return None
        got = extractive_answer(
            question, policy.passages(state), policy.embeddings, max_sentences=policy.max_sentences
        )
        return None if got is None else policy.update(got.text, got.citations)

    def finish(
        config: RunnableConfig,
        scope: RunScope,
        error: NodeError,
        level: DegradeLevel,
        update: dict[str, Any],
    ) -> Command[Any]:
        reason = reason_of(error.error)
        record = {
            "level": level,
            "reason": reason,
            "node": error.node,
            "error": type(error.error).__name__,
        }
        scope.outcomes["degraded"] = record
        update[OPS_KEY] = dict(scope.outcomes)
        span = node_span(config)
        span.set_attribute(sc.DEGRADED, level)
        span.set_attribute(sc.DEGRADED_REASON, reason)
        span.add_event(sc.DEGRADED_EVENT, {**record, "message": str(error.error)[:500]})
        if metrics is not None:
            metrics.degraded.labels(graph, level, reason).inc()
        _log.warning(
            "run %s degraded to %s: node %s failed (%s: %s)",
            scope.run_id,
            level,
            error.node,
            type(error.error).__name__,
            error.error,
        )
        return Command(update=update, goto=TAIL_NODE if needs_tail(config) else END)

    return plain_node("graphops_degrade", handle, ahandle)


def _stale(stale: Stale | None, state: Any, scope: RunScope) -> Mapping[str, Any] | None:
    if stale is None:
        return None
    try:
        return stale(state, scope)
    except Exception:  # a cache that fails must not stop the ladder: the next level answers
        _log.warning("the stale-answer lookup failed", exc_info=True)
        return None
