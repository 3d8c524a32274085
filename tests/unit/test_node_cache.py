"""NodeOps(cache=…) puts LangGraph's own node cache_policy on a node of the observed graph."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import START, StateGraph

from graphops import build_observed_graph
from graphops.cache.retrieval import retrieval_cache_policy
from graphops.errors import ConfigurationError
from graphops.policies import BudgetPolicy, NodeOps, Ops


class State(TypedDict, total=False):
    query: str
    found: list[str]


def test_a_retrieve_node_runs_once_per_query_and_corpus_version() -> None:
    calls: list[str] = []
    version = ["v1"]

    def retrieve(state: State) -> dict[str, Any]:
        calls.append(state["query"])
        return {"found": [f"{version[0]}:{state['query']}"]}

    builder = StateGraph(State)
    builder.add_node("retrieve", retrieve)
    builder.add_edge(START, "retrieve")
    policy = retrieval_cache_policy(lambda: version[0], ttl_s=60)
    app = build_observed_graph(
        builder,
        ops=Ops(budget=BudgetPolicy(), nodes={"retrieve": NodeOps(cache=policy)}, telemetry=None),
        cache=InMemoryCache(),
    )
    assert app.invoke({"query": "Redis URL"})["found"] == ["v1:Redis URL"]
    assert app.invoke({"query": "redis url?"})["found"] == ["v1:Redis URL"]  # normalised
    assert calls == ["Redis URL"]
    version[0] = "v2"  # a re-index: the node runs again
    assert app.invoke({"query": "Redis URL"})["found"] == ["v2:Redis URL"]
    assert len(calls) == 2


def test_node_cache_takes_langgraph_s_cache_policy() -> None:
    with pytest.raises(ConfigurationError, match="CachePolicy"):
        NodeOps(cache=60)  # type: ignore[arg-type]
