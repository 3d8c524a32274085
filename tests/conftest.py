"""Shared fixtures: a small corpus, an index over it built with fake embeddings."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from graphops.corpus import CorpusRetriever, ingest
from graphops.models import HashEmbeddings


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked ``anyio``) run on asyncio: LangGraph needs it."""
    return "asyncio"


CORPUS = {
    "config.md": (
        "# Configuration\n\n"
        "## Chat model\n\n"
        "Set GRAPHOPS_CHAT_MODEL to local, openai:<model> or google:<model>. "
        "Gemini needs GOOGLE_API_KEY.\n\n"
        "## Chunking\n\n"
        "The chunk_size setting defaults to 900 characters and chunk_overlap to 150.\n"
    ),
    "cache.md": (
        "# Caching\n\n## Cache keys\n\n"
        "Cached answers are keyed by tenant, prompt version, model and corpus version.\n"
    ),
    "notes.txt": "Plain text notes about the retriever: it returns the top k chunks by cosine.",
}


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A folder with two markdown files and a text file."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in CORPUS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def embeddings() -> HashEmbeddings:
    """Fast deterministic embeddings in which shared words mean similar vectors."""
    return HashEmbeddings()


@pytest.fixture
def index_dir(tmp_path: Path, corpus_dir: Path, embeddings: HashEmbeddings) -> Path:
    """An index of ``corpus_dir`` built with the fake embeddings."""
    directory = tmp_path / "index"
    ingest([str(corpus_dir)], directory, embeddings)
    return directory


@pytest.fixture
def retriever(index_dir: Path, embeddings: HashEmbeddings) -> CorpusRetriever:
    """A retriever over ``index_dir``."""
    return CorpusRetriever(index_dir=index_dir, embeddings=embeddings, k=3)


@pytest.fixture
def exporter() -> Any:
    """Finished spans, in memory."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def telemetry(exporter: Any) -> Any:
    """A telemetry pipeline exporting synchronously to ``exporter``, with private metrics."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from prometheus_client import CollectorRegistry

    from graphops.observe import Metrics, Telemetry

    pipeline = Telemetry(
        exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(CollectorRegistry())
    )
    yield pipeline
    pipeline.shutdown()


def rag_replies(messages: list[Any]) -> str:
    """A scripted model for the reference graph: retrieves, finds everything relevant."""
    system = messages[0].text
    if system.startswith("Is the message"):
        return '{"small_talk": false}'
    if system.startswith("Say whether"):
        return '{"relevant": "yes"}'
    return "Cached answers are keyed by tenant and corpus version [1]."


class Stuck(SpanExporter):
    """An exporter whose backend hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()
