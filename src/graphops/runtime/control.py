"""The control callback that opens and closes run scopes, and :func:`run_scope`.

Why a callback: LangChain reports the start and the end of every run of a graph to
its callback handlers, however the run starts (fresh input, resume, fork,
``Command(resume=…)``) and however it ends (normally, an exception, an
``interrupt()``, a cancelled ``ainvoke``), in sync and async graphs alike. A
head node would miss every run that does not start at START; a tail node every
run that does not reach it. So the scope lives here, and the step nodes only
read and fill it.

The handler is separate from telemetry (which must never fail a run): it has
``raise_error=True``, so an exception raised while opening a scope (a refusal
the guard makes before any node runs) fails the run instead of being logged and
ignored. It runs inline, holds no lock, and does no I/O itself: close hooks do
their own. It comes before telemetry's handler in the graph's callbacks, so a
scope closes (and the steps that run at close report their spans) before
telemetry ends the run's span; the trace id is therefore asked for lazily
(:attr:`RunScope.trace_id`), once telemetry has started that span.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig

from graphops._compat.langgraph import (
    INTERRUPT_KEY,
    is_bubble_up,
    is_interrupt,
    is_update_state_run,
)
from graphops.errors import RunError
from graphops.flags.model import is_attribute
from graphops.runtime.scope import Identity, RunEnd, RunScope

if TYPE_CHECKING:
    from graphops.flags.resolver import Flags
    from graphops.resilience.budget import BudgetPolicy

__all__ = ["ScopeHandler", "flag_context", "open_scope", "run_scope"]

_log = logging.getLogger("graphops.runtime")

# every open root scope by its run id, whichever graph's handler opened it: telemetry's
# handler is shared by graphs, and reads a run's variants from here as its span starts
_OPEN: dict[UUID, RunScope] = {}


def open_scope(run_id: UUID) -> RunScope | None:
    """The open scope of root run ``run_id`` (None: not a root run, or closed)."""
    return _OPEN.get(run_id)


def flag_context(identity: Identity, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's flags are evaluated on: who runs, and the run's plain metadata.

    ``user``, ``tenant``, ``thread``, ``session``, ``ip`` and ``key`` (the API key's
    fingerprint) come from the run's identity; any other metadata value that is a
    string, a number or a boolean, under a name a rule may use (``plan``, ``region``),
    is there as well.
    """
    context: dict[str, Any] = {
        k: v
        for k, v in metadata.items()
        if is_attribute(k) and isinstance(v, str | int | float | bool)
    }
    named = {
        "user": identity.user,
        "tenant": identity.tenant,
        "thread": identity.thread_id,
        "session": identity.session,
        "ip": identity.ip,
        "key": identity.api_key_id,
    }
    context.update({k: v for k, v in named.items() if v is not None})
    return context


class ScopeHandler(BaseCallbackHandler):
    """Opens a :class:`RunScope` when a run of the graph starts, closes it when it ends.

    ``graph`` names the graph; ``trace_of(run_id)`` (the telemetry handler's) gives
    the run's trace id; ``on_close(scope)`` hooks run when each scope closes, in the
    order given and before any hook a node registers on the scope; ``budget`` sets
    each run's deadline as it opens (a bad per-run ``timeout_s`` fails the run there);
    ``flags`` gives each run the variant of every flag as it opens
    (:attr:`RunScope.variants`, from :func:`flag_context`). A flag store that has
    never answered leaves the run without variants (each node then uses what it
    uses without flags: a prompt's label), with a warning: flags never fail a run.
    """

    run_inline = True
    raise_error = True

    def __init__(
        self,
        graph: str,
        *,
        trace_of: Callable[[UUID], str | None] | None = None,
        on_close: tuple[Callable[[RunScope], object], ...] = (),
        budget: BudgetPolicy | None = None,
        flags: Flags | None = None,
    ) -> None:
        self.graph = graph
        self._budget = budget
        self._flags = flags
        self._trace_of = trace_of
        self._on_close = on_close
        self._scopes: dict[UUID, RunScope] = {}  # root run → its scope
        self._root_of: dict[UUID, UUID] = {}  # every open child run → its root run
        self._interrupted: set[UUID] = set()  # roots in which a node called interrupt()

    # ---------------------------------------------------------------- lookups
    def scope_of(self, run_id: UUID | None) -> RunScope | None:
        """The scope of the run ``run_id`` belongs to (None outside any open run)."""
        if run_id is None:
            return None
        root = self._root_of.get(run_id, run_id)
        return self._scopes.get(root)

    def open_runs(self) -> int:
        """Runs and child runs still tracked (0 between runs: nothing leaks)."""
        return len(self._scopes) + len(self._root_of) + len(self._interrupted)

    # ---------------------------------------------------------------- runs
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is not None:
            root = self._root_of.get(parent_run_id, parent_run_id)
            if root in self._scopes:
                self._root_of[run_id] = root
                return
        # a run whose parent this handler does not know: a run of the graph itself
        # (the graph may be a node of another graph); update_state is no run
        if is_update_state_run(kwargs.get("name")):
            return
        scope = RunScope(str(run_id), self.graph, Identity.from_metadata(metadata or {}))
        if self._budget is not None:
            scope.deadline = self._budget.deadline_for(scope.started, metadata or {})
        if self._flags is not None:
            scope.variants = self._variants(scope, metadata or {})
        trace_of = self._trace_of
        if trace_of is not None:
            scope.trace_of = lambda: trace_of(run_id)
        self._scopes[run_id] = scope
        _OPEN[run_id] = scope
        for hook in self._on_close:
            scope.on_close(hook)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._root_of.pop(run_id, None) is not None:
            return
        # LangGraph ends an interrupted run normally; the node's interrupt said so
        interrupted = run_id in self._interrupted or (
            isinstance(outputs, dict) and INTERRUPT_KEY in outputs
        )
        if interrupted:
            self._close(run_id, "interrupted")
        else:
            self._close(run_id, "ok", outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        root = self._root_of.pop(run_id, None)
        if root is not None:
            if is_interrupt(error):
                self._interrupted.add(root)
            return
        self._close(run_id, _ended_by(error))

    def _variants(self, scope: RunScope, metadata: Mapping[str, Any]) -> dict[str, Any]:
        assert self._flags is not None
        try:
            return dict(self._flags.resolve_all(flag_context(scope.identity, metadata)))
        except RunError as exc:  # never answered yet: no stale copy to fall back on
            _log.warning(
                "run %s has no flag variants: the flag store failed (%s)", scope.run_id, exc
            )
            return {}

    def _close(self, run_id: UUID, ended: RunEnd, output: Any = None) -> None:
        self._interrupted.discard(run_id)
        _OPEN.pop(run_id, None)
        scope = self._scopes.pop(run_id, None)
        if scope is not None:
            scope.close(ended, output)

    # ---------------------------------------------------------------- LLM usage
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._child(run_id, parent_run_id)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._child(run_id, parent_run_id)

    def _child(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        if parent_run_id is None:
            return
        root = self._root_of.get(parent_run_id, parent_run_id)
        if root in self._scopes:
            self._root_of[run_id] = root

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        root = self._root_of.pop(run_id, None)
        scope = self._scopes.get(root) if root is not None else None
        if scope is None:
            return
        usage = scope.usage
        usage.llm_calls += 1
        tokens_in, tokens_out = _tokens(response)
        usage.input_tokens += tokens_in
        usage.output_tokens += tokens_out

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._root_of.pop(run_id, None)

    # ---------------------------------------------------------------- tools and retrievers
    # tracked like chains, so a chain run inside a tool is known as part of the run
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._child(run_id, parent_run_id)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._child(run_id, parent_run_id)

    def _child_ended(self, *args: Any, run_id: UUID, **kwargs: Any) -> None:
        self._root_of.pop(run_id, None)

    on_tool_end = on_tool_error = on_retriever_end = on_retriever_error = _child_ended


def _ended_by(error: BaseException) -> RunEnd:
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    return "interrupted" if is_bubble_up(error) else "error"


def _tokens(response: LLMResult) -> tuple[int, int]:
    """Input and output tokens of one LLM result (message usage, else provider output)."""
    tokens_in = tokens_out = 0
    for generations in response.generations:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                tokens_in += int(usage.get("input_tokens", 0))
                tokens_out += int(usage.get("output_tokens", 0))
    if tokens_in or tokens_out:
        return tokens_in, tokens_out
    token_usage = (response.llm_output or {}).get("token_usage") or {}
    return int(token_usage.get("prompt_tokens", 0)), int(token_usage.get("completion_tokens", 0))


def run_scope(config: RunnableConfig) -> RunScope | None:
    """The scope of the run that ``config`` belongs to; None when no observed graph runs it.

    Inside a node (or a step, a model, a tool), ``config["callbacks"]`` is the node
    run's child manager, whose ``parent_run_id`` the scope handler maps to its run.
    """
    callbacks = config.get("callbacks")
    run_id = getattr(callbacks, "parent_run_id", None)
    for handler in getattr(callbacks, "handlers", None) or ():
        if isinstance(handler, ScopeHandler):
            return handler.scope_of(run_id)
    return None
