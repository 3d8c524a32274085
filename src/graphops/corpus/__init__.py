"""The knowledge base: reading sources, chunking, the vector index and its retriever."""

from __future__ import annotations

from graphops.corpus.chunking import Chunk, chunk_document
from graphops.corpus.index import CorpusIndex, ScoredChunk
from graphops.corpus.ingest import IngestReport, ingest
from graphops.corpus.retriever import CorpusRetriever
from graphops.corpus.sources import FetchOptions, SourceDocument, load_sources

__all__ = [
    "Chunk",
    "CorpusIndex",
    "CorpusRetriever",
    "FetchOptions",
    "IngestReport",
    "ScoredChunk",
    "SourceDocument",
    "chunk_document",
    "ingest",
    "load_sources",
]
