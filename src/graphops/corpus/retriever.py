"""A LangChain retriever over the corpus index.

Being a real :class:`~langchain_core.retrievers.BaseRetriever` means every search
fires ``on_retriever_start``/``on_retriever_end`` callbacks, which is where the
telemetry pipeline turns retrievals into spans. The index is loaded on first use
and reloaded when ``graphops ingest`` swaps in a new one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio.to_thread
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from pydantic import ConfigDict, PrivateAttr

from graphops.corpus.index import CorpusIndex

__all__ = ["CorpusRetriever"]


class CorpusRetriever(BaseRetriever):
    """Top-``k`` chunks by cosine similarity, as Documents carrying id and score."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index_dir: Path
    embeddings: Embeddings
    k: int = 4
    _index: CorpusIndex | None = PrivateAttr(default=None)
    _loaded_stamp: tuple[int, int] = PrivateAttr(default=(-1, -1))
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def index(self) -> CorpusIndex:
        """The current index, reloaded if a newer one was written since."""
        try:
            stat = (self.index_dir / "manifest.json").stat()
            stamp = (stat.st_ino, stat.st_mtime_ns)  # a new index is a new file
        except FileNotFoundError:
            stamp = (-1, -1)
        with self._lock:
            if self._index is None or stamp != self._loaded_stamp:
                self._index = CorpusIndex.load(self.index_dir)
                self._loaded_stamp = stamp
            return self._index

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        """What callbacks see of this retriever: its name, embedding model and ``k``."""
        params = super()._get_ls_params(**kwargs)
        params["ls_retriever_name"] = "corpus"
        params["ls_embedding_model"] = str(getattr(self.embeddings, "model_name", ""))
        params["ls_top_k"] = int(kwargs.get("k", self.k))  # type: ignore[typeddict-unknown-key]
        return params

    @property
    def corpus_version(self) -> str:
        """The version of the index searched: part of every cache key."""
        return self.index().corpus_version

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        index = self.index()
        hits = index.search(self.embeddings.embed_query(query), k)
        return [
            Document(
                page_content=hit.chunk.text,
                id=hit.chunk.id,
                metadata={
                    "id": hit.chunk.id,
                    "doc_id": hit.chunk.doc_id,
                    "title": hit.chunk.title,
                    "section": hit.chunk.section,
                    "score": round(hit.score, 4),
                    "corpus_version": index.corpus_version,
                },
            )
            for hit in hits
        ]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        sync_manager = run_manager.get_sync()
        return await anyio.to_thread.run_sync(
            lambda: self._get_relevant_documents(query, run_manager=sync_manager, **kwargs)
        )
