"""The golden set in evals/golden.jsonl names real documents and real chunks of docs/.

Chunk ids are made by the project's own chunker (default size and overlap), so a
renamed heading or a section that grew into a second chunk shows up here rather
than as a silent drop in hit@k.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphops.corpus.chunking import chunk_document
from graphops.corpus.sources import load_sources
from graphops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "evals" / "golden.jsonl"
MIN_ENTRIES = 30
FIELDS = {"id", "question", "answer", "doc_ids", "chunk_ids"}


def _lines() -> list[str]:
    return GOLDEN.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    """Every entry of the golden set, in file order."""
    return [json.loads(line) for line in _lines()]


@pytest.fixture(scope="module")
def chunk_ids() -> set[str]:
    """The ids the chunker makes from docs/, with document ids relative to the project root."""
    size = Settings.model_fields["chunk_size"].default
    overlap = Settings.model_fields["chunk_overlap"].default
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        sources = load_sources(["docs"])
    return {
        chunk.id
        for source in sources
        for document in source.documents
        for chunk in chunk_document(document, size, overlap)
    }


def test_every_line_is_an_entry_with_the_five_fields() -> None:
    problems = []
    for number, line in enumerate(_lines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc})")
            continue
        if not isinstance(entry, dict) or set(entry) != FIELDS:
            problems.append(f"line {number}: expected an object with the fields {sorted(FIELDS)}")
            continue
        text_ok = all(isinstance(entry[k], str) for k in ("id", "question", "answer"))
        lists_ok = all(
            isinstance(entry[k], list) and entry[k] and all(isinstance(v, str) for v in entry[k])
            for k in ("doc_ids", "chunk_ids")
        )
        if not (text_ok and lists_ok):
            problems.append(f"line {number}: wrong field types")
    assert not problems, "\n".join(problems)


def test_there_are_at_least_30_entries(entries: list[dict[str, Any]]) -> None:
    assert len(entries) >= MIN_ENTRIES


def test_ids_are_unique(entries: list[dict[str, Any]]) -> None:
    ids = [entry["id"] for entry in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate ids: {duplicates}"


def test_questions_and_answers_are_not_empty(entries: list[dict[str, Any]]) -> None:
    empty = [e["id"] for e in entries if not e["question"].strip() or not e["answer"].strip()]
    assert not empty, f"empty question or answer: {empty}"


def test_every_doc_id_is_a_file_under_docs(entries: list[dict[str, Any]]) -> None:
    docs = (ROOT / "docs").resolve()
    missing = [
        f"{entry['id']}: {doc_id}"
        for entry in entries
        for doc_id in entry["doc_ids"]
        if not (ROOT / doc_id).resolve().is_file()
        or not (ROOT / doc_id).resolve().is_relative_to(docs)
    ]
    assert not missing, "doc ids that are not files under docs/:\n" + "\n".join(missing)


def test_every_chunk_id_is_made_by_the_chunker(
    entries: list[dict[str, Any]], chunk_ids: set[str]
) -> None:
    unknown = [
        f"{entry['id']}: {chunk_id}"
        for entry in entries
        for chunk_id in entry["chunk_ids"]
        if chunk_id not in chunk_ids
    ]
    assert not unknown, "chunk ids the chunker does not make from docs/:\n" + "\n".join(unknown)


def test_every_chunk_document_is_listed_in_doc_ids(entries: list[dict[str, Any]]) -> None:
    unlisted = [
        f"{entry['id']}: {chunk_id}"
        for entry in entries
        for chunk_id in entry["chunk_ids"]
        if chunk_id.partition("#")[0] not in entry["doc_ids"]
    ]
    assert not unlisted, "chunks whose document is not in doc_ids:\n" + "\n".join(unlisted)
