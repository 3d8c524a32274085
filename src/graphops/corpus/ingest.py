"""Building and updating the index from sources.

Ingest is incremental: a document whose content hash is unchanged keeps its
chunks and vectors, so re-ingesting a folder after editing one file embeds only
that file. Documents that vanished from an ingested folder are dropped. All
sources are read before anything is embedded and the index is swapped in
atomically, so a failure half-way loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from graphops.corpus.chunking import Chunk, chunk_document
from graphops.corpus.index import CorpusIndex, DocumentEntry, Manifest
from graphops.corpus.sources import FetchOptions, load_sources
from graphops.errors import CorpusIndexError, InvalidInputError, ModelError

__all__ = ["IngestReport", "embeddings_name", "ingest"]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while chunks are embedded."""

_BATCH = 32


@dataclass(frozen=True)
class IngestReport:
    """What an ingest changed, and the resulting corpus version."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    rebuilt: bool
    """The old index could not be reused (other model or chunking, or unreadable)."""
    chunks: int
    embedded: int
    corpus_version: str
    seconds: float


def embeddings_name(embeddings: Embeddings) -> str:
    """The name recorded in the manifest: the model's own, else its class."""
    name = getattr(embeddings, "model_name", None) or getattr(embeddings, "model", None)
    return str(name or type(embeddings).__name__)


def _embed(
    embeddings: Embeddings, chunks: Sequence[Chunk], progress: Progress | None
) -> np.ndarray:
    rows: list[list[float]] = []
    for start in range(0, len(chunks), _BATCH):
        batch = [c.embed_text for c in chunks[start : start + _BATCH]]
        try:
            rows.extend(embeddings.embed_documents(batch))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"embedding failed: {type(exc).__name__}: {exc}") from exc
        if progress is not None:
            progress(min(start + _BATCH, len(chunks)), len(chunks))
    return np.asarray(rows, dtype=np.float32)


def _same_build(a: Manifest, b: Manifest) -> bool:
    return (a.embeddings_model, a.chunk_size, a.chunk_overlap) == (
        b.embeddings_model,
        b.chunk_size,
        b.chunk_overlap,
    )


def _previous(index_dir: Path, manifest: Manifest) -> tuple[CorpusIndex | None, bool, list[str]]:
    """The existing index if it can be reused; whether it is being replaced; its documents.

    An index built another way (model, chunking) or unreadable cannot be extended:
    its documents are reported as removed so the caller can say which to re-ingest.
    """
    if not CorpusIndex.exists(index_dir):
        return None, False, []
    try:
        old = CorpusIndex.load(index_dir)
    except CorpusIndexError:
        return None, True, []
    if _same_build(old.manifest, manifest):
        return old, False, []
    return None, True, list(old.manifest.documents)


def ingest(
    targets: Sequence[str],
    index_dir: Path,
    embeddings: Embeddings,
    *,
    chunk_size: int = 900,
    chunk_overlap: int = 150,
    fetch: FetchOptions | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Add or refresh ``targets`` (folders, files, URLs) in the index at ``index_dir``."""
    if not 0 <= chunk_overlap < chunk_size:
        raise InvalidInputError(
            f"chunk overlap {chunk_overlap} must be at least 0 and below chunk size {chunk_size}"
        )
    started = time.perf_counter()
    sources = load_sources(targets, fetch)
    empty = Manifest(embeddings_name(embeddings), 0, chunk_size, chunk_overlap)
    previous, rebuilt, dropped = _previous(index_dir, empty)
    old_docs = dict(previous.manifest.documents) if previous else {}
    old_chunks: dict[str, list[int]] = {}
    if previous is not None:
        for row, chunk in enumerate(previous.chunks):
            old_chunks.setdefault(chunk.doc_id, []).append(row)

    incoming = {doc.id: doc for source in sources for doc in source.documents}
    scopes = [s.scope for s in sources if s.scope.endswith("/")]
    removed = sorted(
        {d for d in old_docs if d not in incoming and any(d.startswith(s) for s in scopes)}
        | {d for d in dropped if d not in incoming}
    )
    kept = [d for d in old_docs if d not in incoming and d not in removed]
    unchanged = [
        d
        for d, doc in incoming.items()
        if old_docs.get(d, None) is not None and old_docs[d].content_hash == doc.content_hash
    ]
    fresh = [doc for d, doc in incoming.items() if d not in unchanged]

    new_chunks = [c for doc in fresh for c in chunk_document(doc, chunk_size, chunk_overlap)]
    new_vectors = _embed(embeddings, new_chunks, progress)

    chunks: list[Chunk] = []
    blocks: list[np.ndarray] = []
    if previous is not None:
        rows = [r for d in (*kept, *unchanged) for r in old_chunks.get(d, [])]
        chunks.extend(previous.chunks[r] for r in rows)
        blocks.append(previous.vectors[rows])
    chunks.extend(new_chunks)
    blocks.append(new_vectors)
    nonempty = [b for b in blocks if b.size]
    vectors = np.vstack(nonempty) if nonempty else np.zeros((0, 0), dtype=np.float32)
    dimensions = int(vectors.shape[1]) if vectors.size else 0

    documents = {d: old_docs[d] for d in (*kept, *unchanged)}
    for doc in fresh:
        count = sum(1 for c in new_chunks if c.doc_id == doc.id)
        documents[doc.id] = DocumentEntry(doc.content_hash, doc.title, count)
    manifest = Manifest(
        empty.embeddings_model,
        dimensions,
        chunk_size,
        chunk_overlap,
        dict(sorted(documents.items())),
    )
    CorpusIndex(manifest, chunks, vectors.reshape(len(chunks), dimensions)).save(index_dir)
    return IngestReport(
        added=tuple(sorted(doc.id for doc in fresh if doc.id not in old_docs)),
        updated=tuple(sorted(doc.id for doc in fresh if doc.id in old_docs)),
        removed=tuple(removed),
        unchanged=len(unchanged),
        rebuilt=rebuilt,
        chunks=len(chunks),
        embedded=len(new_chunks),
        corpus_version=manifest.corpus_version,
        seconds=time.perf_counter() - started,
    )
