"""The extractive answer on real chunks of docs/ with the real all-MiniLM-L6-v2 embeddings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from graphops.corpus.chunking import chunk_document
from graphops.corpus.sources import SourceDocument
from graphops.models.local_embeddings import LocalMiniLMEmbeddings
from graphops.resilience.extractive import (
    PREFACE,
    Passage,
    aextractive_answer,
    extractive_answer,
    sentences_of,
)

ROOT = Path(__file__).resolve().parents[2]

REQUESTS = "docs/limits.md#request-limits-per-user-tenant-ip-and-api-key"
SPAN_STORE = "docs/storage.md#the-span-store"
CHUNKING = "docs/configuration.md#chunking-settings"
EXPORT = "docs/observability.md#exporters-and-the-export-queue"


def chunk(chunk_id: str) -> Passage:
    """The chunk of docs/ that ingestion makes under ``chunk_id``, as the graph retrieves it."""
    doc_id = chunk_id.split("#", 1)[0]
    text = (ROOT / doc_id).read_text(encoding="utf-8")
    document = SourceDocument(doc_id, text.splitlines()[0].lstrip("# "), text, "markdown")
    (found,) = [c for c in chunk_document(document) if c.id == chunk_id]
    return Passage(found.id, found.text, found.title)


@pytest.mark.parametrize(
    ("question", "right", "others", "fact"),
    [
        pytest.param(
            "How many runs of one user does RequestLimit admit per minute?",
            REQUESTS,
            (SPAN_STORE, CHUNKING),
            "10 runs of one user in any 60 seconds",
            id="request-limits",
        ),
        pytest.param(
            "Which database table keeps the spans of every run?",
            SPAN_STORE,
            (REQUESTS, EXPORT),
            "graphops_spans",
            id="span-store",
        ),
    ],
)
def test_the_extract_comes_from_the_doc_that_answers(
    local_embeddings: LocalMiniLMEmbeddings,
    question: str,
    right: str,
    others: tuple[str, str],
    fact: str,
) -> None:
    # the answering chunk ranked second: the choice is by similarity, not by position
    passages = [chunk(others[0]), chunk(right), chunk(others[1])]
    result = extractive_answer(question, passages, local_embeddings)
    assert result is not None
    best_sentence, best_id, best_similarity = result.sentences[0]
    assert best_id == right
    assert best_similarity >= 0.25
    assert fact in best_sentence
    assert fact in result.text
    assert result.text.startswith(PREFACE)
    assert right in result.citations
    assert set(result.citations) <= {p.id for p in passages}


@pytest.mark.anyio
async def test_async_twin_agrees_on_real_embeddings(
    local_embeddings: LocalMiniLMEmbeddings,
) -> None:
    question = "Which database table keeps the spans of every run?"
    passages = [chunk(REQUESTS), chunk(SPAN_STORE), chunk(EXPORT)]
    sync = extractive_answer(question, passages, local_embeddings)
    result = await aextractive_answer(question, passages, local_embeddings)
    assert sync is not None and result is not None
    assert result.text == sync.text
    assert result.citations == sync.citations
    assert [s[:2] for s in result.sentences] == [s[:2] for s in sync.sentences]
    assert [s[2] for s in result.sentences] == pytest.approx([s[2] for s in sync.sentences])


def test_an_unrelated_question_falls_through(local_embeddings: LocalMiniLMEmbeddings) -> None:
    passages = [chunk(REQUESTS), chunk(SPAN_STORE), chunk(CHUNKING)]
    question = "What is a good recipe for sourdough bread?"
    assert extractive_answer(question, passages, local_embeddings, min_similarity=0.4) is None


def test_time_of_one_extract_over_four_chunks(
    local_embeddings: LocalMiniLMEmbeddings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured, never asserted: what level 2 costs on this machine."""
    passages = [chunk(c) for c in (REQUESTS, SPAN_STORE, CHUNKING, EXPORT)]
    local_embeddings.embed_query("warm up: load the model before timing")
    question = "How many runs of one user does RequestLimit admit per minute?"
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        result = extractive_answer(question, passages, local_embeddings)
        timings.append(time.perf_counter() - started)
    embedded = min(64, sum(len(sentences_of(p.text)) for p in passages))
    assert result is not None
    with capsys.disabled():
        print(
            f"\nextractive answer over 4 chunks: "
            f"{', '.join(f'{t * 1000:.0f}' for t in timings)} ms (3 runs), "
            f"{embedded} sentences + 1 question embedded "
            f"(n_threads={local_embeddings.n_threads})\n{result.text}\n"
            + "\n".join(f"  {s:.3f} {pid}: {text[:70]}" for text, pid, s in result.sentences)
        )
