"""``build_observed_graph``: the user's graph back, with the ops steps in it.

The user's graph is rebuilt flat, not nested as a subgraph (a subgraph costs a
second Pregel loop per run). Its nodes (copied, never shared: ``compile`` mutates
specs), edges and conditional edges keep their behaviour, so conditional edges,
``Command`` routing, ``Send`` fan-outs, subgraphs, sync and async nodes run as
before. Around them, at most two nodes and one control callback:

* the head node (``graphops_head``: ``guard``, then ``cache_lookup``) takes
  START's place and routes with ``Command(goto=…)`` to where START led, or to
  END when refused or answered from the cache;
* the run scope (:mod:`graphops.runtime`) opens and closes with every run,
  whatever node it starts at and however it ends; as it closes, ``cache_store``
  and ``settle`` run on the run's output, once, in no node (a node would be one
  more checkpointed superstep per run);
* the tail node (``graphops_tail``, deferred) writes the run's record into the
  output of a run the head did not start (a resume, a fork,
  ``Command(resume=…)``): every way to END (edges to END, routers' END, nodes
  that may ``Command(goto=END)``, nodes with no way out) leads there in such a
  run, and to END in a run the head started;
* telemetry is the pipeline's callback handler, bound into the compiled graph's
  config after the scope's: no node is wrapped.

With a budget (``Ops.budget``) every run has a deadline, set as its scope
opens, and each user node runs inside :func:`graphops.resilience.budget.budgeted`:
an attempt gets ``min(NodeOps.timeout, time left)``, sync nodes too. With a
degradation ladder (``Ops.degrade``) the graph's default LangGraph
``error_handler`` is graphops' ladder (:mod:`graphops.resilience.degrade`),
unless the graph set one of its own. ``NodeOps.retry`` is LangGraph's own
``retry_policy``, never retrying past the run's deadline. Every private LangGraph
shape used here goes through :mod:`graphops._compat.langgraph`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast, get_type_hints

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer, RetryPolicy, Send

from graphops._compat import langgraph as compat
from graphops.errors import BudgetExhausted, UserError
from graphops.policies import BudgetPolicy, CachePolicy, DegradePolicy, GuardPolicy, NodeOps, Ops
from graphops.resilience.budget import budgeted
from graphops.resilience.degrade import degrade_handler
from graphops.runtime import RunScope, ScopeHandler
from graphops.steps.base import Step, run_at_close
from graphops.steps.cache import cache_lookup_step, cache_store_step
from graphops.steps.channel import OPS_KEY, ops_channel
from graphops.steps.guard import guard_step
from graphops.steps.names import HEAD_NODE, STEP_NAMES, STEP_NODE_KEY, TAIL_NODE
from graphops.steps.nodes import head_node, needs_tail, tail_node
from graphops.steps.settle import settle_step

if TYPE_CHECKING:
    from graphops.observe.handler import TelemetryHandler
    from graphops.observe.metrics import Metrics

__all__ = ["build_observed_graph"]

Edge = tuple[str, str] | tuple[str, Callable[..., Any], Mapping[str, str] | Sequence[str] | None]
"""``(source, target)`` or ``(source, path_function, path_map)`` for a conditional edge."""

_RESERVED = frozenset({*STEP_NAMES, HEAD_NODE, TAIL_NODE})


def _from_nodes(
    nodes: Mapping[str, Callable[..., Any]],
    edges: Sequence[Edge] | None,
    state_schema: type[Any] | None,
) -> StateGraph[Any]:
    if state_schema is None:
        raise UserError(
            "build_observed_graph(nodes) needs state_schema=YourState (a TypedDict, "
            "dataclass or pydantic model), or pass your StateGraph instead"
        )
    builder: StateGraph[Any] = StateGraph(state_schema)
    for name, action in nodes.items():
        if not callable(action):
            raise UserError(f"node {name!r} is {type(action).__name__}, not a callable")
        builder.add_node(name, action)
    if edges is None:  # a pipeline in the mapping's order
        edges = list(itertools.pairwise([START, *nodes, END]))
    for edge in edges:
        if len(edge) == 2:
            builder.add_edge(edge[0], edge[1])
        elif len(edge) == 3:
            builder.add_conditional_edges(edge[0], edge[1], edge[2])  # type: ignore[arg-type]
        else:
            raise UserError(
                f"an edge is (source, target) or (source, path, path_map), not {edge!r}"
            )
    return builder


def _user_graph(
    graph_or_nodes: Any, edges: Sequence[Edge] | None, state_schema: type[Any] | None
) -> StateGraph[Any]:
    if isinstance(graph_or_nodes, CompiledStateGraph):
        return cast(StateGraph[Any], graph_or_nodes.builder)
    if isinstance(graph_or_nodes, StateGraph):
        if edges is not None or state_schema is not None:
            raise UserError("edges= and state_schema= go with a mapping of nodes, not a StateGraph")
        return graph_or_nodes
    if isinstance(graph_or_nodes, Mapping):
        return _from_nodes(graph_or_nodes, edges, state_schema)
    raise UserError(
        "build_observed_graph takes a StateGraph (compiled or not) or a mapping of node "
        f"name to callable, not {type(graph_or_nodes).__name__}"
    )


def _check_ops(ops: Any) -> Ops:
    if not isinstance(ops, Ops):
        raise UserError(f"ops= takes graphops.Ops, not {type(ops).__name__}")
    for name, policy, kind in (
        ("guard", ops.guard, GuardPolicy),
        ("cache", ops.cache, CachePolicy),
        ("budget", ops.budget, BudgetPolicy),
        ("degrade", ops.degrade, DegradePolicy),
    ):
        if policy is not None and not isinstance(policy, kind):
            raise UserError(
                f"Ops.{name} takes {kind.__name__} or None, not {type(policy).__name__}"
            )
    if ops.flags is not None:
        from graphops.flags.resolver import Flags

        if not isinstance(ops.flags, Flags):
            raise UserError(f"Ops.flags takes graphops.flags.Flags, not {type(ops.flags).__name__}")
    for node, options in ops.nodes.items():
        if not isinstance(options, NodeOps):
            raise UserError(f"Ops.nodes[{node!r}] takes NodeOps, not {type(options).__name__}")
    return ops


def _with_ops_key(schema: type[Any], name: str) -> type[Any]:
    """``schema``'s fields plus the ``graphops`` channel, as a TypedDict."""
    fields = dict(get_type_hints(schema, include_extras=True))
    fields[OPS_KEY] = ops_channel()
    return cast(type[Any], TypedDict(name, fields, total=False))  # type: ignore[operator]


def _node_spec(
    name: str,
    spec: Any,
    options: NodeOps | None,
    ops: Ops,
    graph: str,
    metrics: Metrics | None,
) -> Any:
    """A copy of the user's node spec, held to the budget, with graphops' options where
    the user set none."""
    changes: dict[str, Any] = {}
    stage = options.timeout if options is not None else None
    if options is not None and options.retry is not None and not spec.retry_policy:
        changes["retry_policy"] = options.retry
    if options is not None and options.cache is not None and spec.cache_policy is None:
        changes["cache_policy"] = options.cache
    retry = changes.get("retry_policy", spec.retry_policy)
    if retry and ops.budget is not None:
        changes["retry_policy"] = _within_deadline(retry)
    if (
        (ops.budget is not None or stage is not None)
        and not spec.is_error_handler
        and not compat.is_subgraph(spec.runnable)
    ):
        changes["runnable"] = budgeted(
            name, spec.runnable, stage_s=stage, policy=ops.budget, graph=graph, metrics=metrics
        )
    return compat.copy_spec(spec, **changes)


def _within_deadline(retry: RetryPolicy | Sequence[RetryPolicy]) -> Any:
    """``retry`` that never retries an attempt stopped by the run's deadline.

    Its next attempt would have no time at all; LangGraph's own wait before it
    would only run the run past its deadline.
    """
    policies = [retry] if isinstance(retry, RetryPolicy) else list(retry)
    return [p._replace(retry_on=_unless_out_of_time(p.retry_on)) for p in policies]


def _unless_out_of_time(retry_on: Any) -> Callable[[Exception], bool]:
    def retry_if(exc: Exception) -> bool:
        if isinstance(exc, BudgetExhausted) and exc.kind == "run":
            return False
        if callable(retry_on) and not isinstance(retry_on, type):
            return bool(retry_on(exc))
        return isinstance(exc, retry_on)

    return retry_if


def _rerouted(
    path: Runnable[Any, Any], reroute: Callable[[Any, RunnableConfig], Any]
) -> Runnable[Any, Any]:
    """The router ``path``, its result passed through ``reroute(result, config)``.

    The wrapper is untraced: the user's router still runs as its own run, so its
    span event shows the router's own choice.
    """

    def route(state: Any, config: RunnableConfig) -> Any:
        return reroute(path.invoke(state, config), config)

    async def aroute(state: Any, config: RunnableConfig) -> Any:
        return reroute(await path.ainvoke(state, config), config)

    return compat.plain_node(getattr(path, "name", None) or "route", route, aroute)


def _ending_to_tail(ending: Collection[Hashable]) -> Callable[[Any, RunnableConfig], Any]:
    """A router's results with each of ``ending`` replaced by the tail, when the run needs it.

    ``ending`` is END for a router without a path map, else the path-map keys that
    lead to END. Names, ``Send`` objects and lists of them are all routing results.
    """

    def reroute(result: Any, config: RunnableConfig) -> Any:
        results = result if isinstance(result, list | tuple) else [result]
        if not any(not isinstance(r, Send) and r in ending for r in results):
            return result
        if not needs_tail(config):
            return result
        mapped = [r if isinstance(r, Send) or r not in ending else TAIL_NODE for r in results]
        return mapped if isinstance(result, list | tuple) else mapped[0]

    return reroute


def _branch_to_tail(spec: compat.BranchSpec, tail: bool) -> compat.BranchSpec:
    """A user's conditional edge whose END leads to the tail in a run the head did not start."""
    if not tail:
        return spec
    if spec.ends is None:
        return compat.branch(_rerouted(spec.path, _ending_to_tail({END})), None, spec.input_schema)
    ending = frozenset(key for key, target in spec.ends.items() if target == END)
    if not ending:
        return spec
    ends: dict[Hashable, str] = {**spec.ends, TAIL_NODE: TAIL_NODE}  # the tail's own key
    return compat.branch(_rerouted(spec.path, _ending_to_tail(ending)), ends, spec.input_schema)


def _tail_if_needed() -> compat.BranchSpec:
    """An edge to the tail beside a node's way to END, taken only in a run the head did not start.

    The node keeps its own edge to END (or its ``Command``), which writes nothing;
    this one leads nowhere in a run the head started. It reads no state (it is
    attached after compile, without a reader): the choice depends on the run only.
    """

    def route(state: Any, config: RunnableConfig) -> list[str]:
        return [TAIL_NODE] if needs_tail(config) else []

    async def aroute(state: Any, config: RunnableConfig) -> list[str]:
        return route(state, config)

    ends: dict[Hashable, str] = {TAIL_NODE: TAIL_NODE}
    return compat.branch(compat.plain_node("tail_if_needed", route, aroute), ends, None)


def _copy_user_graph(
    user: StateGraph[Any],
    new: StateGraph[Any],
    ops: Ops,
    tail: bool,
    graph: str,
    metrics: Metrics | None,
) -> tuple[list[str], dict[str, compat.BranchSpec], list[str]]:
    """Copy nodes, channels and non-START edges; START's edges back, and the nodes that may end.

    A router's END leads to the tail in a run the head did not start; the nodes
    returned get an edge to the tail for such a run after compile.
    """
    clash = _RESERVED & set(user.nodes)
    if clash:
        raise UserError(f"node names {sorted(clash)} are reserved for graphops steps: rename them")
    unknown = set(ops.nodes) - set(user.nodes)
    if unknown:
        raise UserError(
            f"Ops.nodes names unknown nodes {sorted(unknown)}; nodes: {sorted(user.nodes)}"
        )
    new.schemas.update(user.schemas)
    new.channels.update(user.channels)
    new.managed.update(user.managed)
    compat.copy_defaults(user, new)
    for name, spec in user.nodes.items():
        new.nodes[name] = _node_spec(name, spec, ops.nodes.get(name), ops, graph, metrics)
    new.edges.update((a, b) for a, b in user.edges if a != START)
    new.waiting_edges.update(user.waiting_edges)
    for source, branches in user.branches.items():
        if source != START:
            for name, branch in branches.items():
                new.branches[source][name] = _branch_to_tail(branch, tail)
    ending: list[str] = []
    if tail:
        ending = [a for a, b in user.edges if b == END and a != START]
        ending = list(dict.fromkeys([*ending, *_ending_otherwise(user)]))
    # the head calls START's routers itself, after it wrote the run's record: END is END
    start_targets = [b for a, b in user.edges if a == START]
    return start_targets, dict(user.branches.get(START, {})), ending


class _NoState(TypedDict):
    """The tail's input schema: it reads no state key."""


def _ending_otherwise(user: StateGraph[Any]) -> list[str]:
    """Nodes that can end a run without an edge or router leading to END.

    A node whose ``Command`` may go to END (``destinations`` with END), and a node
    with no way out at all. The edge to the tail they get may fire after every
    run of the node, but the tail is deferred: it still runs once, at the end.
    """
    out = []
    for name, spec in user.nodes.items():
        if spec.is_error_handler:
            continue
        has_edges = any(a == name for a, _ in user.edges) or bool(user.branches.get(name))
        waits = any(name in sources for sources, _ in user.waiting_edges)
        commands_end = spec.ends is not None and END in tuple(spec.ends)
        if commands_end or (not has_edges and not spec.ends and not waits):
            out.append(name)
    return out


def _route_start(
    targets: list[str], branches: Mapping[str, compat.BranchSpec]
) -> tuple[Callable[[Any, RunnableConfig], Any], Callable[[Any, RunnableConfig], Any]]:
    """Where START led, as the head's ``goto``: its edges, plus each router's choice."""

    def mapped(spec: compat.BranchSpec, result: Any) -> list[Any]:
        results = result if isinstance(result, list | tuple) else [result]
        if spec.ends is None:
            return list(results)
        return [r if isinstance(r, Send) else spec.ends[cast(Hashable, r)] for r in results]

    def proceed(state: Any, config: RunnableConfig) -> Any:
        goto: list[Any] = list(targets)
        for spec in branches.values():
            goto += mapped(spec, spec.path.invoke(state, config))
        return goto

    async def aproceed(state: Any, config: RunnableConfig) -> Any:
        goto: list[Any] = list(targets)
        for spec in branches.values():
            goto += mapped(spec, await spec.path.ainvoke(state, config))
        return goto

    return proceed, aproceed


def _destinations(targets: list[str], branches: Mapping[str, compat.BranchSpec]) -> tuple[str, ...]:
    """Where the head may go, for the drawing: START's targets and END."""
    out = list(targets)
    for spec in branches.values():
        out += list((spec.ends or {}).values())
    return tuple(dict.fromkeys([*out, END]))


def build_observed_graph(
    graph_or_nodes: StateGraph[Any] | CompiledStateGraph[Any, Any, Any, Any] | Mapping[str, Any],
    *,
    edges: Sequence[Edge] | None = None,
    state_schema: type[Any] | None = None,
    ops: Ops | None = None,
    checkpointer: Checkpointer = None,
    store: Any = None,
    cache: Any = None,
    name: str | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Your graph, compiled, with the ops steps of ``ops`` inserted and telemetry bound.

    ``graph_or_nodes`` is your ``StateGraph`` (the usual case; a compiled graph's
    builder is copied, not changed), or a mapping of node name to callable with
    ``state_schema`` and ``edges`` (a pipeline in mapping order when ``edges`` is
    omitted). ``checkpointer``, ``store`` and ``cache`` go to LangGraph's
    ``compile``; ``name`` names the graph in spans and stored runs. Who runs
    (``user``, ``tenant``, ``session``, ``ip``, ``api_key``) is read from
    ``config["metadata"]`` (then ``configurable``); ``thread_id`` from
    ``config["configurable"]`` as usual. When any step is on, the output carries
    the ``graphops`` channel with this run's record and its head steps' outcomes (the store
    and the settlement run as the run closes: see ``graphops.run_scope``).
    """
    ops = _check_ops(ops or Ops())
    user = _user_graph(graph_or_nodes, edges, state_schema)
    if OPS_KEY in user.channels:
        raise UserError(f"the state key {OPS_KEY!r} is reserved for graphops: rename it")
    telemetry = _telemetry(ops)
    metrics = telemetry.metrics if telemetry is not None else None

    head: list[Step] = []
    at_close: list[Step] = []
    if ops.guard is not None:
        head.append(guard_step(ops.guard))
    if ops.cache is not None:
        head.append(cache_lookup_step(ops.cache, channels=user.channels))
        at_close.append(cache_store_step(ops.cache))
    if ops.guard is not None:
        at_close.append(settle_step(ops.guard.limiter))

    # the budget's deadline and the ladder's record need the run scope and the channel
    steps_on = (
        bool(head) or ops.budget is not None or ops.degrade is not None or ops.flags is not None
    )
    graph_name = name or "graph"
    new: StateGraph[Any] = StateGraph(
        user.state_schema,
        user.context_schema,
        input_schema=user.input_schema,
        output_schema=_with_ops_key(user.output_schema, "GraphopsOutput")
        if steps_on
        else user.output_schema,
    )
    start_targets, start_branches, ending = _copy_user_graph(
        user, new, ops, steps_on, graph_name, metrics
    )
    if ops.degrade is not None and not compat.has_default_error_handler(new):
        ladders = {n: o.degrade for n, o in ops.nodes.items() if o.degrade is not None}
        stale = ops.cache.stale if ops.cache is not None else None
        handler_node = degrade_handler(
            ops.degrade, ladders, stale=stale, graph=graph_name, metrics=metrics
        )
        new.set_node_defaults(error_handler=handler_node)
    if steps_on:
        compat.add_schema(new, _with_ops_key(user.state_schema, "GraphopsState"))
        compat.add_schema(new, _NoState)
        new.add_node(TAIL_NODE, tail_node(), input_schema=_NoState, defer=True)
        new.add_edge(TAIL_NODE, END)
        proceed, aproceed = _route_start(start_targets, start_branches)
        new.add_node(
            HEAD_NODE,
            head_node(head, proceed=proceed, aproceed=aproceed, metrics=metrics),
            input_schema=user.state_schema,
            destinations=_destinations(start_targets, start_branches),
            metadata={STEP_NODE_KEY: ", ".join(s.name for s in head)},
        )
        new.add_edge(START, HEAD_NODE)
    else:
        new.edges.update((START, target) for target in start_targets)
        for branch_name, spec in start_branches.items():
            new.branches[START][branch_name] = spec

    try:
        compiled = new.compile(checkpointer=checkpointer, store=store, cache=cache, name=graph_name)
    except ValueError as exc:  # LangGraph's own validation of the graph as given
        raise UserError(str(exc)) from exc
    for node in ending:
        compat.attach_stateless_branch(compiled, node, TAIL_NODE, _tail_if_needed())
    callbacks: list[Any] = []
    if steps_on:  # first: a scope closes, and its steps report, before the run's span ends
        handler = telemetry.handler if telemetry is not None else None
        callbacks.append(
            ScopeHandler(
                graph_name,
                trace_of=handler.trace_of if handler is not None else None,
                on_close=(_at_close(at_close, metrics, handler),) if at_close else (),
                budget=ops.budget,
                flags=ops.flags,
            )
        )
    if telemetry is not None:
        callbacks.append(telemetry.handler)
    return compiled.with_config({"callbacks": callbacks}) if callbacks else compiled


def _at_close(
    steps: Sequence[Step], metrics: Metrics | None, telemetry: TelemetryHandler | None
) -> Callable[[RunScope], None]:
    """The close hook that runs ``steps`` on every scope, each with its span."""

    def close(scope: RunScope) -> None:
        run_at_close(steps, scope, metrics, telemetry)

    return close


def _telemetry(ops: Ops) -> Any:
    if ops.telemetry is None:
        return None
    if ops.telemetry == "default":
        from graphops.observe.telemetry import default_telemetry

        return default_telemetry()
    return ops.telemetry
