"""The extractive answer (level 2 of the degradation ladder) on hashed-word embeddings."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.embeddings import Embeddings

from graphops.errors import ConfigurationError, InvalidInputError, ModelError
from graphops.models import HashEmbeddings
from graphops.resilience.extractive import (
    PREFACE,
    Extract,
    Passage,
    aextractive_answer,
    extractive_answer,
    sentences_of,
)


class Counting(Embeddings):
    """Delegates to HashEmbeddings, records every call, and can scale the vectors."""

    def __init__(self, scale: float = 1.0) -> None:
        self.inner = HashEmbeddings()
        self.scale = scale
        self.calls: list[tuple[str, list[str]]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(("embed_documents", list(texts)))
        return [[x * self.scale for x in v] for v in self.inner.embed_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        self.calls.append(("embed_query", [text]))
        return [x * self.scale for x in self.inner.embed_query(text)]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(("aembed_documents", list(texts)))
        return self.inner.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self.calls.append(("aembed_query", [text]))
        return self.inner.embed_query(text)


CACHE = Passage(
    "docs/cache.md#keys",
    "# Caching\n\nCached answers are keyed by tenant, prompt version, model and corpus version. "
    "A cache hit skips the chat model entirely.",
    "Caching",
)
LIMITS = Passage(
    "docs/limits.md#requests",
    "Request limits count runs per user in a moving window. "
    "A refused run is not counted against any limit.",
    "Limits",
)
CHUNKS = Passage(
    "docs/config.md#chunking",
    "The chunk size setting defaults to 900 characters. The chunk overlap defaults to 150.",
    "Configuration",
)


# --- splitting Markdown into sentences -----------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        pytest.param(
            "# Title\n\n## Section\n\nThis sentence is the only text here.",
            ["This sentence is the only text here."],
            id="atx-headings-dropped",
        ),
        pytest.param(
            "Setext Heading Line\n===\n\nThis sentence is the only text here.",
            ["This sentence is the only text here."],
            id="setext-headings-dropped",
        ),
        pytest.param(
            "Before the code comes this.\n\n```python\n# not a heading\nx = 1. Y = 2.\n```\n\n"
            "After the code comes this.",
            ["Before the code comes this.", "After the code comes this."],
            id="code-fences-and-contents-dropped",
        ),
        pytest.param(
            "The table below lists things.\n\n| name | value is long here |\n|---|---|\n"
            "| a | b c d e |\n\nThe table above lists things.",
            ["The table below lists things.", "The table above lists things."],
            id="table-rows-dropped",
        ),
        pytest.param(
            "<details>\n<summary>More words in here</summary>\n\nSome <b>bold</b> words are "
            "here<br> today. <!-- a hidden comment with words -->",
            ["Some bold words are here today."],
            id="html-dropped",
        ),
        pytest.param(
            "- first item has four words\n* second item has four words\n"
            "  and a continuation line\n1. third item has four words",
            [
                "first item has four words",
                "second item has four words and a continuation line",
                "third item has four words",
            ],
            id="list-bullets-stripped",
        ),
        pytest.param(
            "This is **very** important and *quite* _plain_ and the chunk_size stays.",
            ["This is very important and quite plain and the chunk_size stays."],
            id="emphasis-stripped",
        ),
        pytest.param(
            "Read [the limits page](limits.md) or [the guide][guide] today. "
            "![a diagram](arch.png) Images are dropped entirely.",
            ["Read the limits page or the guide today.", "Images are dropped entirely."],
            id="links-keep-their-text",
        ),
        pytest.param(
            "Use a store, e.g. Redis, for sharing. That is, i.e. Redis or memory, a choice.",
            ["Use a store, e.g. Redis, for sharing.", "That is, i.e. Redis or memory, a choice."],
            id="e.g.-and-i.e.-do-not-split",
        ),
        pytest.param(
            "Measured on LangGraph 1.2.24 with Python 3.11 here. The second sentence is here.",
            ["Measured on LangGraph 1.2.24 with Python 3.11 here.", "The second sentence is here."],
            id="version-numbers-do-not-split",
        ),
        pytest.param(
            "The graph is graphs/agentic_rag.py and it is served. "
            "It lives in graphs/agentic_rag.py. "
            "Then comes one more sentence.",
            [
                "The graph is graphs/agentic_rag.py and it is served.",
                "It lives in graphs/agentic_rag.py.",
                "Then comes one more sentence.",
            ],
            id="file-names-do-not-split",
        ),
        pytest.param(
            "Call `f(x). Then *y* _z_` to start it. Another sentence follows it.",
            ["Call `f(x). Then *y* _z_` to start it.", "Another sentence follows it."],
            id="inline-code-untouched",
        ),
        pytest.param(
            "Too short here. Is this a question now? Yes, this is an exclamation! Ok.",
            ["Is this a question now?", "Yes, this is an exclamation!"],
            id="short-fragments-dropped-and-?-!-split",
        ),
        pytest.param(
            "> Quoted text has four words.\n\n---\n\n[guide]: https://example.com/a/b/c/d",
            ["Quoted text has four words."],
            id="quotes-rules-link-definitions",
        ),
    ],
)
def test_sentences_of(markdown: str, expected: list[str]) -> None:
    assert sentences_of(markdown) == expected


# --- choosing ------------------------------------------------------------------------------


def test_chosen_sentences_come_from_the_passage_sharing_the_question_words() -> None:
    result = extractive_answer(
        "How are cached answers keyed?", [LIMITS, CACHE, CHUNKS], HashEmbeddings()
    )
    assert result is not None
    assert result.sentences[0][0].startswith("Cached answers are keyed by tenant")
    assert result.sentences[0][1] == CACHE.id
    assert result.citations[0] == CACHE.id
    assert "Cached answers are keyed by tenant, prompt version, model and corpus version. [1]" in (
        result.text
    )
    assert result.text.startswith(PREFACE + "\n\n")


def test_text_is_in_passage_order_and_citations_number_passages_by_first_citation() -> None:
    question = "What do the chunk overlap and cached answers default to in a window?"
    result = extractive_answer(
        question, [LIMITS, CACHE, CHUNKS], HashEmbeddings(), min_similarity=0.1, preface=""
    )
    assert result is not None
    # best first: the third passage's second sentence, then its first, then the first passage
    assert [(s, pid) for s, pid, _ in result.sentences] == [
        ("The chunk overlap defaults to 150.", CHUNKS.id),
        ("The chunk size setting defaults to 900 characters.", CHUNKS.id),
        ("Request limits count runs per user in a moving window.", LIMITS.id),
    ]
    similarities = [s for _, _, s in result.sentences]
    assert similarities == sorted(similarities, reverse=True)
    # presented in passage order, then sentence order; [n] in order of first citation
    assert result.text == (
        "Request limits count runs per user in a moving window. [1] "
        "The chunk size setting defaults to 900 characters. [2] "
        "The chunk overlap defaults to 150. [2]"
    )
    assert result.citations == (LIMITS.id, CHUNKS.id)


def test_sentences_of_one_passage_keep_their_order_whatever_their_score() -> None:
    later_but_better = "Quotas reserve tokens at admission time."
    earlier = "Quotas settle at close of the run and refund tokens."
    passage = Passage("p", f"{earlier} {later_but_better}")
    result = extractive_answer(
        "quotas reserve tokens at admission", [passage], HashEmbeddings(), preface=""
    )
    assert result is not None
    assert [s for s, _, _ in result.sentences] == [later_but_better, earlier]
    assert result.text == f"{earlier} [1] {later_but_better} [1]"


def test_near_duplicates_are_dropped() -> None:
    words = "the span store keeps every span of every run in one table of the database"
    first = Passage("a", f"{words.capitalize()} today.")
    second = Passage("b", f"{words.capitalize()} tomorrow.")
    other = Passage("c", "The span store table has one row per span.")
    result = extractive_answer("span store table", [first, second, other], HashEmbeddings())
    assert result is not None
    ids = [pid for _, pid, _ in result.sentences]
    assert "c" in ids
    assert not {"a", "b"} <= set(ids)  # the two near-identical sentences never both appear


def test_exact_duplicates_are_embedded_once() -> None:
    embeddings = Counting()
    same = "Cached answers are keyed by tenant and model."
    result = extractive_answer(
        "cached answers keyed", [Passage("a", same), Passage("b", same)], embeddings
    )
    assert result is not None
    assert embeddings.calls[1] == ("embed_documents", [same])
    assert result.citations == ("a",)


@pytest.mark.parametrize(
    ("question", "passages"),
    [
        pytest.param("How are answers cached?", [], id="no-passages"),
        pytest.param(
            "How are answers cached?",
            [Passage("a", "# Heading only\n\n```\ncode only is here now\n```\n\n| a | b |")],
            id="no-usable-sentence",
        ),
        pytest.param("zebra xylophone quokka", [CACHE, LIMITS], id="nothing-similar-enough"),
        pytest.param("   ", [CACHE], id="blank-question"),
    ],
)
def test_none_when_nothing_can_answer(question: str, passages: list[Passage]) -> None:
    embeddings = Counting()
    assert extractive_answer(question, passages, embeddings) is None


def test_max_candidates_caps_the_sentences_embedded_preferring_higher_ranks() -> None:
    first = Passage(
        "first", " ".join(f"Sentence number {i} of the first passage." for i in range(4))
    )
    second = Passage(
        "second", " ".join(f"Sentence number {i} of the second one." for i in range(4))
    )
    embeddings = Counting()
    extractive_answer("sentence number", [first, second], embeddings, max_candidates=6)
    assert [name for name, _ in embeddings.calls] == ["embed_query", "embed_documents"]
    embedded = embeddings.calls[1][1]
    assert len(embedded) == 6
    assert sum("first passage" in s for s in embedded) == 4
    assert sum("second one" in s for s in embedded) == 2


def test_vectors_need_not_be_normalised() -> None:
    question = "How are cached answers keyed?"
    plain = extractive_answer(question, [LIMITS, CACHE], HashEmbeddings())
    scaled = extractive_answer(question, [LIMITS, CACHE], Counting(scale=7.5))
    assert plain is not None and scaled is not None
    assert plain.text == scaled.text
    assert [s[2] for s in scaled.sentences] == pytest.approx([s[2] for s in plain.sentences])


def test_from_doc_reads_a_retrieved_doc() -> None:
    doc = {"id": "docs/a.md#x", "title": "A", "section": "X", "text": "Body.", "score": 0.5}
    assert Passage.from_doc(doc) == Passage("docs/a.md#x", "Body.", "A")


def test_embeddings_returning_the_wrong_count_is_a_model_error() -> None:
    class Short(HashEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return super().embed_documents(texts[:1])

    with pytest.raises(ModelError, match="for 2 text"):
        extractive_answer("cached answers", [CACHE], Short())


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_sentences": 0},
        {"max_sentences": 1.5},
        {"min_similarity": -0.1},
        {"min_similarity": 1.5},
        {"min_similarity": float("nan")},
        {"max_candidates": 0},
        {"max_candidates": True},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        extractive_answer("question here", [CACHE], HashEmbeddings(), **options)


@pytest.mark.parametrize("question", [None, 42, b"bytes", ["a list"]])
def test_a_question_that_is_not_text_is_invalid_input(question: Any) -> None:
    with pytest.raises(InvalidInputError, match="must be text"):
        extractive_answer(question, [CACHE], HashEmbeddings())


# --- async twin ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_twin_gives_the_same_result_through_aembed() -> None:
    question = "What do the chunk overlap and cached answers default to?"
    passages = [LIMITS, CACHE, CHUNKS]
    sync = extractive_answer(question, passages, HashEmbeddings(), min_similarity=0.1)
    embeddings = Counting()
    result = await aextractive_answer(question, passages, embeddings, min_similarity=0.1)
    assert isinstance(result, Extract)
    assert result == sync
    assert [name for name, _ in embeddings.calls] == ["aembed_query", "aembed_documents"]


@pytest.mark.anyio
async def test_async_twin_validates_and_returns_none_alike() -> None:
    assert await aextractive_answer("zebra quokka", [CACHE], HashEmbeddings()) is None
    with pytest.raises(InvalidInputError):
        await aextractive_answer(7, [CACHE], HashEmbeddings())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        await aextractive_answer("q", [CACHE], HashEmbeddings(), max_sentences=0)
