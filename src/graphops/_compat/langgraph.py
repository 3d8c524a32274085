"""Every use of LangGraph's private shapes, in one place.

graphops copies a user's ``StateGraph`` node by node and edge by edge, and reads
LangGraph's runs through LangChain callbacks; for both it needs a few things
LangGraph does not export: the node and branch spec classes, the builder's
defaults and schema registration, the runnable wrapper for plain functions, how
it tags a node's conditional-edge run, what it names channels and
``update_state`` runs. Each is used through a function or constant here, and
``tests/unit/test_compat.py`` checks every one against the installed LangGraph,
so an upgrade that changes a shape fails that test, naming the shape, instead of
breaking a run. ``pyproject.toml`` pins LangGraph to the minor range tested.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, cast

from langchain_core.runnables import Runnable
from langgraph._internal._constants import INTERRUPT
from langgraph._internal._runnable import KWARGS_CONFIG_KEYS, RunnableCallable
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.graph import StateGraph
from langgraph.graph._branch import BranchSpec
from langgraph.graph._node import StateNodeSpec
from langgraph.graph.state import _DEFAULT_ERROR_HANDLER_NODE

__all__ = [
    "DEFAULT_ERROR_HANDLER_NODE",
    "INTERRUPT_KEY",
    "BranchSpec",
    "StateNodeSpec",
    "add_schema",
    "attach_stateless_branch",
    "branch",
    "copy_defaults",
    "copy_spec",
    "has_default_error_handler",
    "is_bubble_up",
    "is_conditional_edge_run",
    "is_interrupt",
    "is_state_channel",
    "is_subgraph",
    "is_update_state_run",
    "node_body",
    "plain_node",
    "with_body",
]

INTERRUPT_KEY: str = INTERRUPT
"""The output key under which an interrupted run returns its interrupts."""

DEFAULT_ERROR_HANDLER_NODE: str = _DEFAULT_ERROR_HANDLER_NODE
"""The node ``compile`` adds to a builder for ``set_node_defaults(error_handler=…)``."""

_UPDATE_STATE_SUFFIX = "UpdateState"  # Pregel names update_state's run "<graph>UpdateState"
_FIRST_SEQUENCE_STEP = "seq:step:1"  # a node's body; its conditional edges run as step 2+


def copy_spec(spec: StateNodeSpec[Any, Any], **changes: Any) -> StateNodeSpec[Any, Any]:
    """A copy of a node spec (``compile`` mutates specs in place: never share one)."""
    return dataclasses.replace(spec, **changes)


def branch(
    path: Runnable[Any, Any], ends: dict[Hashable, str] | None, input_schema: type[Any] | None
) -> BranchSpec:
    """A conditional edge's spec: its path function, its path map, the schema it reads."""
    return BranchSpec(path, ends, input_schema)


def copy_defaults(user: StateGraph[Any], new: StateGraph[Any]) -> None:
    """Give ``new`` the node defaults of ``user`` (``set_node_defaults``).

    A builder that was compiled already holds the error handler node ``compile``
    made from its default, and its specs name it; compiling the copy with the same
    default would add that node twice, so the copy keeps every default but that one.
    """
    defaults = dataclasses.replace(user._node_defaults)
    if DEFAULT_ERROR_HANDLER_NODE in user.nodes:
        defaults.error_handler = None
    new._node_defaults = defaults


def has_default_error_handler(builder: StateGraph[Any]) -> bool:
    """Whether ``builder`` has a default error handler (``set_node_defaults``), or its node."""
    return (
        builder._node_defaults.error_handler is not None
        or DEFAULT_ERROR_HANDLER_NODE in builder.nodes
    )


_CONFIG_ACCEPT = next((k[2], k[3]) for k in KWARGS_CONFIG_KEYS if k[0] == "config")


def node_body(
    runnable: Any,
) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None, bool] | None:
    """A plain node's functions (sync, async) and whether they take ``config``; None for
    any other runnable. LangGraph gives a sync function an ``afunc`` of its own that runs
    it in an executor (a ``functools.partial``)."""
    if type(runnable) is not RunnableCallable or runnable.explode_args:
        return None
    return runnable.func, runnable.afunc, "config" in runnable.func_accepts


def with_body(
    runnable: Any, func: Callable[..., Any] | None, afunc: Callable[..., Awaitable[Any]] | None
) -> Runnable[Any, Any]:
    """A copy of a plain node calling ``func``/``afunc`` instead, with the same injected
    arguments plus ``config`` (one runnable layer, not a wrapper around the node)."""
    new = copy.copy(runnable)
    new.func, new.afunc = func, afunc
    new.func_accepts = {**runnable.func_accepts, "config": _CONFIG_ACCEPT}
    return cast(Runnable[Any, Any], new)


def is_subgraph(runnable: Any) -> bool:
    """Whether a node's runnable is a graph (LangGraph finds subgraphs by their type: a
    wrapper around one would hide it from ``get_state(subgraphs=True)`` and streaming)."""
    from langgraph.pregel import Pregel

    return isinstance(runnable, Pregel)


def add_schema(builder: StateGraph[Any], schema: type[Any]) -> None:
    """Register ``schema``'s keys as channels of ``builder`` (as ``add_node`` does)."""
    builder._add_schema(schema)


def attach_stateless_branch(compiled: Any, source: str, name: str, spec: BranchSpec) -> None:
    """Add a conditional edge after ``source`` to a compiled graph, one that reads no state.

    ``add_conditional_edges`` gives every branch a reader that copies all of the
    graph's channels to show the path function the state fresh after the node;
    a path that decides from the run alone (its ``config``) needs none of that,
    and ``CompiledStateGraph.attach_branch(..., with_reader=False)`` skips it:
    the path then receives what the node returned. The drawing still shows the edge.
    """
    compiled.attach_branch(source, name, spec, with_reader=False)


def plain_node(
    name: str,
    func: Callable[..., Any],
    afunc: Callable[..., Awaitable[Any]] | None = None,
) -> Runnable[Any, Any]:
    """A node of a sync and an async body run as one untraced run (no nested run)."""
    return RunnableCallable(func, afunc, name=name, trace=False)


def is_bubble_up(error: BaseException) -> bool:
    """Whether ``error`` is LangGraph's control flow (an interrupt), not a failure."""
    return isinstance(error, GraphBubbleUp)


def is_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a node's ``interrupt()`` (the run pauses; a resume is a new run)."""
    return isinstance(error, GraphInterrupt)


def is_update_state_run(name: str | None) -> bool:
    """Whether a root run named ``name`` is ``graph.update_state()``: a state edit, not a run."""
    return bool(name) and str(name).endswith(_UPDATE_STATE_SUFFIX)


def is_conditional_edge_run(tags: Sequence[str] | None) -> bool:
    """Whether a direct child run of a node, tagged ``tags``, is one of its conditional edges."""
    return bool(tags) and any(
        t.startswith("seq:step:") and t != _FIRST_SEQUENCE_STEP for t in tags or ()
    )


def is_state_channel(name: str) -> bool:
    """Whether a checkpoint channel is a state key, not LangGraph's own (``branch:to:…``)."""
    return ":" not in name and not name.startswith("__")
