"""Caching retrieval: a query's document ids and scores, per corpus version.

:class:`CachedRetriever` wraps a retriever and remembers, per query, which
documents it returned and their scores, never their text: a hit rebuilds the
Documents from the index by id, so a cached result is the same bytes a search
would give. The key holds the corpus version, the normalised query
(:func:`~graphops.cache.keys.normalise`), ``k`` and a fingerprint of the wrapped
retriever's class and parameters. When no corpus version is known nothing is
cached at all: a re-index then could not be told from the index before it, and
stale ids would be served.

:func:`retrieval_cache_policy` is the same idea for LangGraph's own node cache
(``add_node(..., cache_policy=...)``): its key hashes a canonical, type-tagged
encoding of the corpus version, the normalised query and the ids already in
``state["documents"]``, where LangGraph's default key pickles the input (and
once collided on inputs differing only in type, langgraph#8009).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import anyio.to_thread
from cachetools import Cache, LRUCache, TTLCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from langgraph.types import CachePolicy
from pydantic import BaseModel, ConfigDict, PrivateAttr

from graphops.cache.keys import normalise
from graphops.corpus.chunking import Chunk
from graphops.corpus.index import CorpusIndex
from graphops.corpus.retriever import CorpusRetriever
from graphops.errors import UserError
from graphops.observe.metrics import Metrics

__all__ = ["CachedRetriever", "retrieval_cache_policy", "retriever_fingerprint"]

_SCHEME = "graphops-retrieval-v1"
_IGNORED_FIELDS = frozenset({"tags", "metadata", "callbacks", "verbose"})

Hits = tuple[tuple[str, float | None], ...]
"""A cached result: ``(document id, score)`` pairs, best first."""


def _type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _canonical(value: Any) -> Any:
    """``value`` as JSON in which every scalar names its type: ``1``, ``"1"`` and ``1.0`` differ."""
    tag = _type_name(value)
    if value is None:
        return ["None"]
    if isinstance(value, bool):
        return [tag, value]
    if isinstance(value, int):
        return [tag, str(int(value))]
    if isinstance(value, float):
        return [tag, float(value).hex()]
    if isinstance(value, str):
        return [tag, str(value)]
    if isinstance(value, bytes):
        return [tag, bytes(value).hex()]
    if isinstance(value, list | tuple):
        return [tag, [_canonical(v) for v in value]]
    raise TypeError(f"no canonical encoding for {tag}: key on str, int, float, bool or lists")


def _digest(parts: Sequence[Any]) -> str:
    encoded = json.dumps([_SCHEME, *parts], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


def _describe(value: Any, depth: int = 0) -> Any:
    """A stable description of a retriever parameter (for :func:`retriever_fingerprint`)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return _canonical(value)
    if isinstance(value, PurePath):
        return ["path", str(value)]
    if depth >= 3:
        return [_type_name(value)]
    if isinstance(value, Mapping):
        items = [[_describe(k, depth + 1), _describe(v, depth + 1)] for k, v in value.items()]
        return ["mapping", sorted(items, key=json.dumps)]
    if isinstance(value, list | tuple | set | frozenset):
        described = [_describe(v, depth + 1) for v in value]
        return (
            ["set", sorted(described, key=json.dumps)]
            if isinstance(value, set | frozenset)
            else ["seq", described]
        )
    if isinstance(value, BaseModel):
        fields = sorted(set(type(value).model_fields) - _IGNORED_FIELDS)
        return [
            _type_name(value),
            [[f, _describe(getattr(value, f, None), depth + 1)] for f in fields],
        ]
    name = getattr(value, "model_name", None)
    return [_type_name(value), name if isinstance(name, str) else None]


def retriever_fingerprint(retriever: BaseRetriever) -> str:
    """A stable name for a retriever's class and every parameter it was built with.

    Pydantic fields are described recursively (an embedding model by its class
    and fields); objects that are not by their class and ``model_name``.
    """
    fields = sorted(set(type(retriever).model_fields) - _IGNORED_FIELDS)
    params = [[f, _describe(getattr(retriever, f, None))] for f in fields]
    return _digest(["retriever", _type_name(retriever), params])


class CachedRetriever(BaseRetriever):
    """A retriever that answers repeated queries from memory, per corpus version.

    ``retriever`` is searched on a miss (``k`` and other keyword arguments are
    passed through; ``k`` defaults to the wrapped retriever's own). The corpus
    version comes from ``corpus_version`` if given, else from the wrapped
    retriever's ``corpus_version`` attribute; when neither gives one, every
    query is searched and nothing is stored. A :class:`CorpusRetriever`'s hits
    are rebuilt from its index; any other retriever needs ``documents``, a
    function from ids to the Documents (``None`` for an id it no longer has).

    At most ``max_entries`` results are kept (least recently used go first),
    each for ``ttl_s`` seconds of ``clock`` (``None``: until evicted). Safe to
    share between threads. ``metrics`` counts lookups as
    ``graphops_cache_requests{layer="retrieval"}`` with ``result`` ``hit``,
    ``miss``, or ``bypass`` (no corpus version).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    corpus_version: Callable[[], str | None] | None = None
    documents: Callable[[Sequence[str]], Sequence[Document | None]] | None = None
    ttl_s: float | None = 3600.0
    max_entries: int = 1024
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.monotonic
    _cache: Cache[str, Hits] = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _fingerprint: str = PrivateAttr(default="")
    _chunks: tuple[CorpusIndex, dict[str, Chunk]] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        """Check the arguments and make the cache."""
        if self.max_entries < 1:
            raise UserError(f"max_entries is {self.max_entries}: give at least 1")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise UserError(f"ttl_s is {self.ttl_s}: give a positive number, or None for no TTL")
        if self.documents is None and not isinstance(self.retriever, CorpusRetriever):
            raise UserError(
                f"CachedRetriever cannot rebuild {type(self.retriever).__name__}'s documents "
                "by id: pass documents=<function from ids to Documents>"
            )
        self._cache = (
            LRUCache(self.max_entries)
            if self.ttl_s is None
            else TTLCache(self.max_entries, self.ttl_s, timer=self.clock)
        )
        self._fingerprint = retriever_fingerprint(self.retriever)

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        """The wrapped retriever's tracing parameters, named ``cached``."""
        params = self.retriever._get_ls_params(**kwargs)
        params["ls_retriever_name"] = "cached"
        return params

    def current_version(self) -> str | None:
        """The corpus version searched now (None: unknown, so nothing is cached)."""
        if self.corpus_version is not None:
            return self.corpus_version()
        version = getattr(self.retriever, "corpus_version", None)
        if callable(version):
            version = version()
        return version if isinstance(version, str) and version else None

    def key(self, query: str, version: str, k: Any) -> str:
        """The cache key of ``query`` searched for ``k`` results in corpus ``version``."""
        return _digest(["retrieval", self._fingerprint, version, normalise(query), _canonical(k)])

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.cache_requests.labels("retrieval", result).inc()

    def _lookup(
        self, query: str, kwargs: Mapping[str, Any]
    ) -> tuple[tuple[str, str] | None, list[Document] | None]:
        """``((key, version), documents)``: no key without a version, no documents on a miss."""
        version = self.current_version()
        if version is None:
            self._count("bypass")
            return None, None
        key = self.key(query, version, kwargs.get("k", getattr(self.retriever, "k", None)))
        with self._lock:
            hits = self._cache.get(key)
        documents = None if hits is None else self._rebuild(version, hits)
        self._count("miss" if documents is None else "hit")
        return (key, version), documents

    def _store(self, key: tuple[str, str] | None, documents: Sequence[Document]) -> None:
        if key is None or self.current_version() != key[1]:
            return  # re-indexed while searching: these ids may belong to either version
        hits: list[tuple[str, float | None]] = []
        for doc in documents:
            doc_id = doc.id or doc.metadata.get("id")
            if not isinstance(doc_id, str):
                return  # a document without an id cannot be rebuilt
            score = doc.metadata.get("score")
            hits.append((doc_id, float(score) if isinstance(score, int | float) else None))
        with self._lock:
            self._cache[key[0]] = tuple(hits)

    def _rebuild(self, version: str, hits: Hits) -> list[Document] | None:
        """The Documents of cached ``hits``; None if any is gone (then it is a miss)."""
        if self.documents is not None:
            found = list(self.documents([doc_id for doc_id, _ in hits]))
            if len(found) != len(hits) or any(d is None for d in found):
                return None
            rebuilt = []
            for doc, (_, score) in zip(found, hits, strict=True):
                assert doc is not None
                metadata = {**doc.metadata, "score": score} if score is not None else doc.metadata
                rebuilt.append(doc.model_copy(update={"metadata": metadata}))
            return rebuilt
        assert isinstance(self.retriever, CorpusRetriever)
        index = self.retriever.index()
        if self.corpus_version is None and index.corpus_version != version:
            return None  # re-indexed since the version was read
        chunks = self._chunk_map(index)
        if any(doc_id not in chunks for doc_id, _ in hits):
            return None
        return [_corpus_document(chunks[i], score, index.corpus_version) for i, score in hits]

    def _chunk_map(self, index: CorpusIndex) -> dict[str, Chunk]:
        with self._lock:
            if self._chunks is None or self._chunks[0] is not index:
                self._chunks = (index, {chunk.id: chunk for chunk in index.chunks})
            return self._chunks[1]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        key, documents = self._lookup(query, kwargs)
        if documents is not None:
            return documents
        found = self.retriever.invoke(
            query, config={"callbacks": run_manager.get_child()}, **kwargs
        )
        self._store(key, found)
        return found

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # the version check may read the index from disk: off the event loop
        key, documents = await anyio.to_thread.run_sync(self._lookup, query, kwargs)
        if documents is not None:
            return documents
        found = await self.retriever.ainvoke(
            query, config={"callbacks": run_manager.get_child()}, **kwargs
        )
        await anyio.to_thread.run_sync(self._store, key, found)
        return found


def _corpus_document(chunk: Chunk, score: float | None, version: str) -> Document:
    """The Document :class:`CorpusRetriever` returns for ``chunk``."""
    return Document(
        page_content=chunk.text,
        id=chunk.id,
        metadata={
            "id": chunk.id,
            "doc_id": chunk.doc_id,
            "title": chunk.title,
            "section": chunk.section,
            "score": score,
            "corpus_version": version,
        },
    )


def _field(state: Any, name: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(name)
    return getattr(state, name, None)


def _document_id(doc: Any) -> Any:
    """A document in state by its id: a Document's, a dict's, or a string itself."""
    if isinstance(doc, str):
        return ["id", _canonical(doc)]
    if isinstance(doc, Document):
        doc_id, text = doc.id or doc.metadata.get("id"), doc.page_content
    elif isinstance(doc, Mapping):
        metadata = doc.get("metadata") or {}
        doc_id = doc.get("id") or (metadata.get("id") if isinstance(metadata, Mapping) else None)
        text = str(doc.get("page_content", ""))
    else:
        raise TypeError(
            f"state['documents'] holds a {_type_name(doc)}: use Documents, dicts or ids"
        )
    if doc_id is not None:
        return ["id", _canonical(doc_id)]
    return ["text", hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()]


def retrieval_cache_policy(
    corpus_version: Callable[[], str | None], ttl_s: float | None, query_key: str = "query"
) -> CachePolicy[Callable[[Any], str]]:
    """A LangGraph node ``CachePolicy`` for a retrieve node, keyed per corpus version.

    The key hashes, each encoded with its type, the corpus version, the
    normalised ``state[query_key]`` and the ids of the documents already in
    ``state["documents"]`` (if any). When ``corpus_version()`` gives None the key
    is new every time, so nothing is ever served from the cache. LangGraph
    counts its TTL in whole seconds: ``ttl_s`` is rounded up.
    """
    if ttl_s is not None and ttl_s <= 0:
        raise UserError(f"ttl_s is {ttl_s}: give a positive number, or None for no TTL")

    def key_func(state: Any) -> str:
        version = corpus_version()
        if version is None:
            return f"uncached:{uuid.uuid4().hex}"
        if isinstance(state, Mapping) and query_key not in state:
            raise UserError(f"the node's input has no {query_key!r}: pass query_key=<its name>")
        query = _field(state, query_key)
        encoded_query = ["str", normalise(query)] if type(query) is str else _canonical(query)
        docs = _field(state, "documents")
        encoded_docs = None if docs is None else [_document_id(d) for d in docs]
        return _digest(["node", _canonical(version), encoded_query, encoded_docs])

    ttl = None if ttl_s is None else max(1, math.ceil(ttl_s))
    return CachePolicy(key_func=key_func, ttl=ttl)
