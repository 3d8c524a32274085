"""The retrieval cache: query -> ids and scores, per corpus version; and its LangGraph policy."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import anyio.to_thread
import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import END, START, StateGraph
from prometheus_client import CollectorRegistry
from pydantic import Field

from graphops.cache.retrieval import CachedRetriever, retrieval_cache_policy, retriever_fingerprint
from graphops.corpus import CorpusRetriever, ingest
from graphops.errors import UserError
from graphops.models import HashEmbeddings
from graphops.observe import Metrics

QUERY = "Which chat model needs GOOGLE_API_KEY for Gemini?"


class CountingEmbeddings(HashEmbeddings):
    """Hash embeddings that remember every query embedded (one per real search)."""

    queries: ClassVar[list[str]] = []

    def embed_query(self, text: str) -> list[float]:
        CountingEmbeddings.queries.append(text)
        return super().embed_query(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def searches() -> Iterator[list[str]]:
    CountingEmbeddings.queries = []
    yield CountingEmbeddings.queries


@pytest.fixture
def inner(index_dir: Path, searches: list[str]) -> CorpusRetriever:
    return CorpusRetriever(index_dir=index_dir, embeddings=CountingEmbeddings(), k=3)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cached(inner: CorpusRetriever, metrics: Metrics, clock: Clock) -> CachedRetriever:
    return CachedRetriever(retriever=inner, ttl_s=60, metrics=metrics, clock=clock)


def count(metrics: Metrics, result: str) -> float:
    value: float = metrics.cache_requests.labels("retrieval", result)._value.get()
    return value


def test_a_repeated_query_is_answered_from_the_cache(
    cached: CachedRetriever, inner: CorpusRetriever, searches: list[str], metrics: Metrics
) -> None:
    first = cached.invoke(QUERY)
    again = cached.invoke("  which CHAT model needs google_api_key for gemini ")
    assert len(searches) == 1
    assert again == first == inner.invoke(QUERY)  # same text, ids, scores and metadata
    assert [d.id for d in again] == [d.metadata["id"] for d in first]
    assert first[0].metadata["id"].endswith("config.md#chat-model")
    assert (count(metrics, "hit"), count(metrics, "miss")) == (1, 1)


def test_a_different_k_or_query_misses(cached: CachedRetriever, searches: list[str]) -> None:
    cached.invoke(QUERY)
    one = cached.invoke(QUERY, k=1)
    assert len(one) == 1
    assert len(searches) == 2
    assert cached.invoke(QUERY, k=1) == one
    assert len(searches) == 2
    cached.invoke("cache keys tenant")
    assert len(searches) == 3


def test_entries_expire_after_the_ttl(
    cached: CachedRetriever, searches: list[str], clock: Clock
) -> None:
    cached.invoke(QUERY)
    clock.now += 59
    cached.invoke(QUERY)
    assert len(searches) == 1
    clock.now += 2
    cached.invoke(QUERY)
    assert len(searches) == 2


def test_the_cache_is_bounded(inner: CorpusRetriever, searches: list[str]) -> None:
    cached = CachedRetriever(retriever=inner, max_entries=1, ttl_s=None)
    for query in (QUERY, "cache keys", QUERY):
        cached.invoke(query)
    assert len(searches) == 3


def test_a_new_corpus_version_never_uses_old_entries(
    cached: CachedRetriever,
    inner: CorpusRetriever,
    searches: list[str],
    corpus_dir: Path,
    index_dir: Path,
) -> None:
    before = inner.corpus_version
    cached.invoke("cache keys tenant")
    (corpus_dir / "cache.md").write_text("# Caching\n\n## TTL\n\nCache entries expire.\n")
    ingest([str(corpus_dir)], index_dir, HashEmbeddings())
    assert inner.corpus_version != before
    docs = cached.invoke("cache keys tenant")
    assert len(searches) == 2
    assert {d.metadata["corpus_version"] for d in docs} == {inner.corpus_version}
    assert not any(d.metadata["id"].endswith("#cache-keys") for d in docs)
    assert cached.invoke("cache keys tenant") == docs  # cached again, under the new version
    assert len(searches) == 2


def test_without_a_corpus_version_nothing_is_cached(
    inner: CorpusRetriever, searches: list[str], metrics: Metrics
) -> None:
    cached = CachedRetriever(retriever=inner, corpus_version=lambda: None, metrics=metrics)
    for _ in range(3):
        cached.invoke(QUERY)
    assert len(searches) == 3
    assert (count(metrics, "bypass"), count(metrics, "hit"), count(metrics, "miss")) == (3, 0, 0)


def test_a_given_version_function_decides(inner: CorpusRetriever, searches: list[str]) -> None:
    version = ["v1"]
    cached = CachedRetriever(retriever=inner, corpus_version=lambda: version[0])
    cached.invoke(QUERY)
    cached.invoke(QUERY)
    version[0] = "v2"
    cached.invoke(QUERY)
    assert len(searches) == 2


class ListRetriever(BaseRetriever):
    """A retriever of its own: every query gets the same documents; counts its searches."""

    docs: list[Document]
    calls: list[str] = Field(default_factory=list)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        self.calls.append(query)
        return self.docs[: int(kwargs.get("k", len(self.docs)))]


def test_another_retriever_rebuilds_through_documents() -> None:
    docs = [Document("alpha", id="a", metadata={"score": 0.9}), Document("beta", id="b")]
    by_id = {d.id: d for d in docs}
    inner = ListRetriever(docs=docs)

    def lookup(ids: Sequence[str]) -> list[Document | None]:
        return [by_id.get(i) for i in ids]

    cached = CachedRetriever(retriever=inner, corpus_version=lambda: "v", documents=lookup)
    assert cached.invoke("q") == docs
    assert cached.invoke("q") == docs
    assert inner.calls == ["q"]
    del by_id["b"]  # an id that is gone is a miss, never a wrong document
    assert cached.invoke("q") == docs
    assert inner.calls == ["q", "q"]
    with pytest.raises(UserError, match="documents="):
        CachedRetriever(retriever=inner, corpus_version=lambda: "v")


def test_the_fingerprint_names_class_and_parameters(index_dir: Path) -> None:
    def corpus(**kwargs: Any) -> CorpusRetriever:
        params: dict[str, Any] = {"index_dir": index_dir, "embeddings": HashEmbeddings()}
        return CorpusRetriever(**{**params, **kwargs})

    same = retriever_fingerprint(corpus()), retriever_fingerprint(corpus())
    assert same[0] == same[1]
    assert retriever_fingerprint(corpus(k=5)) != same[0]
    assert retriever_fingerprint(corpus(embeddings=HashEmbeddings(dimensions=64))) != same[0]
    assert retriever_fingerprint(corpus(index_dir=index_dir / "x")) != same[0]


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


@pytest.mark.anyio
async def test_async_hits_and_misses_without_blocking_the_loop(
    cached: CachedRetriever,
    searches: list[str],
    metrics: Metrics,
    blockbuster: BlockBuster,
) -> None:
    first = await cached.ainvoke(QUERY)
    assert await cached.ainvoke(QUERY) == first
    assert len(await cached.ainvoke(QUERY, k=1)) == 1
    assert len(searches) == 2
    assert (count(metrics, "hit"), count(metrics, "miss")) == (1, 2)
    assert await anyio.to_thread.run_sync(cached.invoke, QUERY) == first  # one cache for both
    assert len(searches) == 2


# ---------------------------------------------------------------- the LangGraph policy


def test_policy_keys_differ_on_version_query_type_and_documents() -> None:
    version = ["v1"]
    key = retrieval_cache_policy(lambda: version[0], ttl_s=60).key_func
    base = key({"query": "What is X?"})
    assert key({"query": "what  is x"}) == base  # normalised
    assert key({"query": "What is Y?"}) != base
    assert key({"query": 1}) != key({"query": "1"})
    assert key({"query": 1}) != key({"query": 1.0})
    assert key({"query": True}) != key({"query": 1})
    with_docs = key({"query": "What is X?", "documents": [Document("t", id="a")]})
    assert with_docs != base
    assert (
        with_docs
        == key({"query": "What is X?", "documents": [{"id": "a"}]})
        == key({"query": "What is X?", "documents": ["a"]})
    )
    assert with_docs != key({"query": "What is X?", "documents": ["b"]})
    assert key({"query": "What is X?", "documents": []}) not in (base, with_docs)
    version[0] = "v2"
    assert key({"query": "What is X?"}) != base
    alt = retrieval_cache_policy(lambda: "v1", ttl_s=60, query_key="question").key_func
    assert alt({"question": "What is X?"}) == base
    with pytest.raises(UserError, match="query_key"):
        alt({"query": "What is X?"})


def test_policy_without_a_version_never_repeats_a_key() -> None:
    key = retrieval_cache_policy(lambda: None, ttl_s=None).key_func
    assert key({"query": "q"}) != key({"query": "q"})


def test_policy_ttl_is_whole_seconds() -> None:
    assert retrieval_cache_policy(lambda: "v", ttl_s=1.5).ttl == 2
    assert retrieval_cache_policy(lambda: "v", ttl_s=None).ttl is None
    with pytest.raises(UserError):
        retrieval_cache_policy(lambda: "v", ttl_s=0)


class RagState(TypedDict, total=False):
    query: str
    documents: list[str]


def test_a_graph_node_with_the_policy_runs_once_per_query_and_version() -> None:
    version = ["v1"]
    runs: list[str] = []

    def retrieve(state: RagState) -> RagState:
        runs.append(state["query"])
        return {"documents": [f"{version[0]}:{state['query']}"]}

    graph = StateGraph(RagState)
    graph.add_node(
        "retrieve", retrieve, cache_policy=retrieval_cache_policy(lambda: version[0], 60)
    )
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", END)
    app = graph.compile(cache=InMemoryCache())

    first = app.invoke({"query": "What is X?"})
    assert app.invoke({"query": "what is x"})["documents"] == first["documents"]
    assert runs == ["What is X?"]
    app.invoke({"query": "What is Y?"})
    assert len(runs) == 2
    version[0] = "v2"
    assert app.invoke({"query": "What is X?"})["documents"] == ["v2:What is X?"]
    assert len(runs) == 3
