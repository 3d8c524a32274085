"""The persisted vector index: chunks, their vectors, and a manifest.

Layout under the index directory: ``manifest.json`` (embedding model, chunking,
per-document hashes, the corpus version), ``chunks.jsonl`` and ``vectors.npy``.
A faiss ``IndexFlatIP`` over the normalised vectors is built at load (20k x 384 in
milliseconds), so the files stay plain and the search is exact cosine.

The corpus version is a hash of everything that decides what retrieval returns
(model, chunking, every document's content): the cache keys on it, so re-indexing
changed content invalidates cached answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from graphops.corpus.chunking import Chunk
from graphops.errors import CorpusIndexError

__all__ = ["CorpusIndex", "DocumentEntry", "Manifest", "ScoredChunk"]

_FORMAT = 1


@dataclass(frozen=True)
class DocumentEntry:
    """What the manifest remembers of one document."""

    content_hash: str
    title: str
    chunks: int


@dataclass(frozen=True)
class Manifest:
    """Everything needed to tell whether the index still matches its inputs."""

    embeddings_model: str
    dimensions: int
    chunk_size: int
    chunk_overlap: int
    documents: Mapping[str, DocumentEntry] = field(default_factory=dict)
    built_at: str = ""
    format: int = _FORMAT

    @property
    def corpus_version(self) -> str:
        """A short hash of the model, the chunking and every document's content."""
        digest = hashlib.sha256(
            json.dumps(
                [
                    self.embeddings_model,
                    self.chunk_size,
                    self.chunk_overlap,
                    sorted((k, v.content_hash) for k, v in self.documents.items()),
                ]
            ).encode()
        )
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to disk, with the version spelled out for readers."""
        data = asdict(self)
        data["documents"] = {k: asdict(v) for k, v in self.documents.items()}
        data["corpus_version"] = self.corpus_version
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse a manifest written by :meth:`to_json`."""
        documents = {k: DocumentEntry(**v) for k, v in data["documents"].items()}
        fields = {
            k: data[k] for k in ("embeddings_model", "dimensions", "chunk_size", "chunk_overlap")
        }
        return cls(
            **fields,
            documents=documents,
            built_at=data.get("built_at", ""),
            format=data.get("format", 0),
        )


@dataclass(frozen=True)
class ScoredChunk:
    """A search hit: the chunk and its cosine similarity to the query."""

    chunk: Chunk
    score: float


class CorpusIndex:
    """Chunks with their vectors, searchable by cosine similarity."""

    def __init__(self, manifest: Manifest, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != vectors.shape[0]:
            raise CorpusIndexError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors")
        if len(chunks) and vectors.shape[1] != manifest.dimensions:
            raise CorpusIndexError(
                f"vectors have {vectors.shape[1]} dimensions, "
                f"the manifest says {manifest.dimensions}"
            )
        import faiss

        self.manifest = manifest
        self.chunks = list(chunks)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._faiss = faiss.IndexFlatIP(manifest.dimensions)
        if len(self.chunks):
            self._faiss.add(self.vectors)

    @property
    def corpus_version(self) -> str:
        """See :attr:`Manifest.corpus_version`."""
        return self.manifest.corpus_version

    def search(self, query_vector: Sequence[float], k: int) -> list[ScoredChunk]:
        """The ``k`` chunks most similar to ``query_vector``, best first."""
        if not self.chunks or k <= 0:
            return []
        query = np.asarray([query_vector], dtype=np.float32)
        if query.shape[1] != self.manifest.dimensions:
            raise CorpusIndexError(
                f"query has {query.shape[1]} dimensions, the index {self.manifest.dimensions}: "
                "was it built with another embedding model? Re-run 'graphops ingest'"
            )
        scores, ids = self._faiss.search(query, min(k, len(self.chunks)))
        return [
            ScoredChunk(self.chunks[i], float(s))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0
        ]

    @staticmethod
    def exists(directory: Path) -> bool:
        """Whether an index has been written to ``directory``."""
        return (directory / "manifest.json").is_file()

    @classmethod
    def load(cls, directory: Path) -> CorpusIndex:
        """Read an index written by :meth:`save`."""
        if not cls.exists(directory):
            raise CorpusIndexError(f"no index in {directory}: run 'graphops ingest PATH'")
        try:
            manifest = Manifest.from_json(json.loads((directory / "manifest.json").read_text()))
            if manifest.format != _FORMAT:
                raise CorpusIndexError(
                    f"{directory} holds index format {manifest.format}, this graphops reads "
                    f"{_FORMAT}: re-run 'graphops ingest'"
                )
            with (directory / "chunks.jsonl").open(encoding="utf-8") as lines:
                chunks = [Chunk(**json.loads(line)) for line in lines if line.strip()]
            vectors = np.load(directory / "vectors.npy", allow_pickle=False)
        except CorpusIndexError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorpusIndexError(
                f"the index in {directory} is unreadable ({type(exc).__name__}: {exc}); "
                "delete it and re-run 'graphops ingest'"
            ) from None
        if vectors.ndim != 2:
            raise CorpusIndexError(f"the index in {directory} is corrupt: vectors are not a matrix")
        return cls(manifest, chunks, vectors)

    def save(self, directory: Path) -> None:
        """Write atomically: a reader sees the old index or the new one, never a mix."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".index-", dir=directory.parent))
        try:
            manifest = self.manifest.to_json()
            manifest["built_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
            with (staging / "chunks.jsonl").open("w", encoding="utf-8") as out:
                for chunk in self.chunks:
                    out.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
            np.save(staging / "vectors.npy", self.vectors, allow_pickle=False)
            old = directory.with_name(directory.name + ".old")
            if directory.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
