from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphops.corpus import CorpusIndex, CorpusRetriever, ingest
from graphops.corpus.ensure import ensure_index
from graphops.errors import CorpusIndexError, IngestError
from graphops.models import HashEmbeddings
from graphops.settings import Settings

pytestmark = pytest.mark.anyio


class CountingEmbeddings(HashEmbeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        counts.append(len(texts))
        return super().embed_documents(texts)


counts: list[int] = []


def test_search_finds_the_relevant_chunk(retriever: CorpusRetriever) -> None:
    docs = retriever.invoke("Which chat model needs GOOGLE_API_KEY for Gemini?")
    assert docs[0].metadata["id"].endswith("config.md#chat-model")
    assert docs[0].metadata["score"] >= docs[-1].metadata["score"]
    assert len(docs) == 3
    assert (
        retriever.invoke("cache keys tenant", k=1)[0].metadata["id"].endswith("cache.md#cache-keys")
    )


async def test_async_search(retriever: CorpusRetriever) -> None:
    docs = await retriever.ainvoke("chunk_size overlap")
    assert docs[0].metadata["id"].endswith("config.md#chunking")


def test_reingest_embeds_only_what_changed(tmp_path: Path, corpus_dir: Path) -> None:
    counts.clear()
    embeddings = CountingEmbeddings()
    first = ingest([str(corpus_dir)], tmp_path / "ix", embeddings)
    assert first.embedded == first.chunks == 4
    assert len(first.added) == 3
    again = ingest([str(corpus_dir)], tmp_path / "ix", embeddings)
    assert again.embedded == 0
    assert again.unchanged == 3
    assert again.corpus_version == first.corpus_version

    (corpus_dir / "cache.md").write_text("# Caching\n\n## TTL\n\nEntries expire after the TTL.\n")
    (corpus_dir / "notes.txt").unlink()
    changed = ingest([str(corpus_dir)], tmp_path / "ix", embeddings)
    assert changed.embedded == 1
    assert [Path(d).name for d in changed.updated] == ["cache.md"]
    assert [Path(d).name for d in changed.removed] == ["notes.txt"]
    assert changed.corpus_version != first.corpus_version
    index = CorpusIndex.load(tmp_path / "ix")
    assert sorted(c.id.split("/")[-1] for c in index.chunks) == [
        "cache.md#ttl",
        "config.md#chat-model",
        "config.md#chunking",
    ]


def test_single_files_are_added_next_to_a_folder(tmp_path: Path, corpus_dir: Path) -> None:
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nMore text.")
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    report = ingest([str(extra)], tmp_path / "ix", HashEmbeddings())
    assert report.removed == ()
    assert len(CorpusIndex.load(tmp_path / "ix").manifest.documents) == 4


def test_a_bad_source_leaves_the_index_untouched(tmp_path: Path, corpus_dir: Path) -> None:
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    before = (tmp_path / "ix" / "manifest.json").read_text()
    (corpus_dir / "broken.md").write_bytes(b"\xff\xfe")
    with pytest.raises(IngestError, match="not UTF-8"):
        ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    assert (tmp_path / "ix" / "manifest.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".index-")]


def test_another_embedding_model_reembeds_everything(tmp_path: Path, corpus_dir: Path) -> None:
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings(dimensions=64))
    report = ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings(dimensions=128))
    assert report.embedded == report.chunks
    assert CorpusIndex.load(tmp_path / "ix").manifest.dimensions == 128


def test_missing_and_corrupt_indexes(tmp_path: Path, index_dir: Path) -> None:
    with pytest.raises(CorpusIndexError, match="graphops ingest"):
        CorpusIndex.load(tmp_path / "nothing")
    (index_dir / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(CorpusIndexError, match="unreadable"):
        CorpusIndex.load(index_dir)


def test_query_of_the_wrong_dimension(index_dir: Path) -> None:
    index = CorpusIndex.load(index_dir)
    with pytest.raises(CorpusIndexError, match="another embedding model"):
        index.search(np.ones(7).tolist(), 2)


def test_manifest_records_the_corpus_version(index_dir: Path) -> None:
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["corpus_version"] == CorpusIndex.load(index_dir).corpus_version
    assert manifest["embeddings_model"] == "hash-256"


def test_ensure_index_builds_once_and_refuses_other_models(
    tmp_path: Path, corpus_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", corpus=(str(corpus_dir),))
    report = ensure_index(settings, HashEmbeddings())
    assert report is not None
    assert report.chunks == 4
    assert ensure_index(settings, HashEmbeddings()) is None
    with pytest.raises(CorpusIndexError, match="built with hash-256"):
        ensure_index(settings, HashEmbeddings(dimensions=32))
    with pytest.raises(CorpusIndexError, match="GRAPHOPS_CORPUS is empty"):
        ensure_index(Settings(data_dir=tmp_path / "other", corpus=()), HashEmbeddings())


def test_retriever_reloads_after_reingest(tmp_path: Path, corpus_dir: Path) -> None:
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    retriever = CorpusRetriever(index_dir=tmp_path / "ix", embeddings=HashEmbeddings(), k=1)
    old = retriever.corpus_version
    (corpus_dir / "new.md").write_text("# Redis\n\nRedis backs the limiter at scale.")
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    assert retriever.corpus_version != old
    assert retriever.invoke("Redis limiter")[0].metadata["id"].endswith("new.md#redis")


def test_rebuild_reports_the_documents_it_drops(tmp_path: Path, corpus_dir: Path) -> None:
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nMore text.")
    ingest([str(corpus_dir), str(extra)], tmp_path / "ix", HashEmbeddings())
    report = ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings(), chunk_size=500)
    assert report.rebuilt is True
    assert [Path(d).name for d in report.removed] == ["extra.md"]
    assert report.embedded == report.chunks
    same = ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings(), chunk_size=500)
    assert same.rebuilt is False


def test_unreadable_old_index_is_rebuilt(tmp_path: Path, corpus_dir: Path) -> None:
    ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    (tmp_path / "ix" / "chunks.jsonl").write_text("{not json")
    report = ingest([str(corpus_dir)], tmp_path / "ix", HashEmbeddings())
    assert report.rebuilt is True
    assert report.chunks == 4


def test_bad_chunking_arguments(tmp_path: Path, corpus_dir: Path) -> None:
    from graphops.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="below chunk size"):
        ingest(
            [str(corpus_dir)], tmp_path / "ix", HashEmbeddings(), chunk_size=100, chunk_overlap=100
        )


def test_ensure_index_notices_a_chunking_change(tmp_path: Path, corpus_dir: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", corpus=(str(corpus_dir),))
    ensure_index(settings, HashEmbeddings())
    changed = Settings(data_dir=tmp_path / "data", corpus=(str(corpus_dir),), chunk_size=500)
    with pytest.raises(CorpusIndexError, match="chunked 900/150, the settings say 500/150"):
        ensure_index(changed, HashEmbeddings())
