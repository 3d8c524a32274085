"""Level 2 of the degradation ladder: answer with the retrieved passages' own sentences.

When the chat model is down or the run's time budget is spent, a RAG run that already
retrieved passages still holds the answer, only not in its own words. This module
picks the sentences of those passages most similar to the question (by embedding)
and returns them with citations, so the run answers instead of failing. It needs only
the embedding model, which is local by default and much cheaper than a generation.

The sync and async entry points share everything but the two embedding calls (the
helpers are pure), rather than the sync one wrapping the async one: that would need
an event loop, and the caller may already be running one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from graphops.errors import ConfigurationError, InvalidInputError, ModelError

__all__ = ["Extract", "Passage", "aextractive_answer", "extractive_answer", "sentences_of"]

PREFACE = (
    "The answer service is degraded; these passages from the documentation are the closest match:"
)
NEAR_DUPLICATE = 0.95  # cosine above which a sentence says nothing a chosen one does not
MIN_WORDS = 4  # shorter fragments are captions, labels or lead-ins to a dropped code block

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s|$)")
_TABLE_ROW = re.compile(r"^\s*\|")
_UNDERLINE = re.compile(r"^\s*[-=|: ]{3,}\s*$")  # setext underline, table separator, rule
_HTML_BLOCK = re.compile(r"^\s*</?[A-Za-z][\w-]*(\s[^>]*)?/?>|^\s*<!--")
_LINK_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_CODE = re.compile(r"`+[^`]*?`+")
_INLINE = (  # (pattern, replacement), applied in order, inline code already set aside
    (re.compile(r"<!--.*?-->"), ""),
    (re.compile(r"</?(?:a|b|i|em|strong|span|br|img|sub|sup|kbd|code|p|div)\b[^>]*>"), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), ""),  # images say nothing in a text answer
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),
    (re.compile(r"<(https?://[^>]+)>"), r"\1"),
    (re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])"), r"\1"),
)
# a sentence ends at . ! or ? (and any closing quote or bracket) before white space,
# unless the word is an abbreviation or the next sentence would start in lower case
_END = re.compile(r"[.!?][\"')\]]*\s+")
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "cf.", "vs.", "approx.", "no.", "fig."})
_HIDDEN = re.compile("\ue000(\\d+)\ue001")
_Candidate = tuple[int, int, str, str]  # passage rank, sentence index, sentence, passage id


@dataclass(frozen=True)
class Passage:
    """A retrieved passage, in rank order among the others."""

    id: str
    text: str
    title: str = ""

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Passage:
        """From a retrieved chunk as the reference graph keeps it (``RetrievedDoc``)."""
        return cls(id=str(doc["id"]), text=str(doc["text"]), title=str(doc.get("title") or ""))


@dataclass(frozen=True)
class Extract:
    """An extractive answer.

    ``text`` is the preface, then the chosen sentences in passage order, each followed
    by ``[n]``; ``citations[n-1]`` is the id of the passage ``[n]`` cites.
    ``sentences`` holds (sentence, passage id, similarity), best first.
    """

    text: str
    citations: tuple[str, ...]
    sentences: tuple[tuple[str, str, float], ...]


def _units(markdown: str) -> list[str]:
    """Paragraphs and list items as single lines, without headings, code, tables or HTML."""
    units: list[str] = []
    current: list[str] = []
    fenced = False

    def close() -> None:
        if current:
            units.append(" ".join(current))
            current.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            close()
        elif fenced or not line.strip():
            close()
        elif _UNDERLINE.match(line):
            current.clear()  # what it underlines is a heading or a table header
        elif any(p.match(line) for p in (_HEADING, _TABLE_ROW, _HTML_BLOCK, _LINK_DEF)):
            close()
        else:
            if _BULLET.match(line):
                close()
            current.append(_BULLET.sub("", _QUOTE.sub("", line), count=1).strip())
    close()
    return units


def _split(unit: str) -> list[str]:
    """Sentences of one paragraph; inline code is set aside so nothing in it splits."""
    codes: list[str] = []

    def hide(match: re.Match[str]) -> str:
        codes.append(match.group(0))
        return f"\ue000{len(codes) - 1}\ue001"

    text = _CODE.sub(hide, unit)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    pieces: list[str] = []
    start = 0
    for end in _END.finditer(text):
        word = text[start : end.start() + 1].rsplit(maxsplit=1)[-1].lower()
        following = text[end.end() : end.end() + 1]
        if word in _ABBREVIATIONS or following.islower():
            continue
        pieces.append(text[start : end.end()])
        start = end.end()
    pieces.append(text[start:])
    return [_HIDDEN.sub(lambda m: codes[int(m.group(1))], " ".join(p.split())) for p in pieces]


def sentences_of(markdown: str) -> list[str]:
    """The readable sentences of a Markdown passage, in order, fragments dropped."""
    return [s for unit in _units(markdown) for s in _split(unit) if len(s.split()) >= MIN_WORDS]


def _prepare(
    question: object, passages: Sequence[Passage], max_sentences: int, minimum: float, cap: int
) -> list[_Candidate]:
    """Validate the call; the candidate sentences, none for a blank question."""
    if not isinstance(question, str):
        raise InvalidInputError(f"the question must be text, not {type(question).__name__}")
    for name, value in (("max_sentences", max_sentences), ("max_candidates", cap)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
    if not isinstance(minimum, int | float) or not 0.0 <= minimum <= 1.0:
        raise ConfigurationError(f"min_similarity must be in [0, 1], not {minimum!r}")
    return _candidates(passages, cap) if question.strip() else []


def _candidates(passages: Sequence[Passage], cap: int) -> list[_Candidate]:
    """Sentences in rank order, then text order, exact duplicates skipped, up to ``cap``."""
    seen: set[str] = set()
    found: list[_Candidate] = []
    for rank, passage in enumerate(passages):
        for index, sentence in enumerate(sentences_of(passage.text)):
            if sentence not in seen:
                seen.add(sentence)
                found.append((rank, index, sentence, passage.id))
                if len(found) == cap:
                    return found
    return found


def _unit_rows(vectors: Sequence[Sequence[float]], expected: int) -> np.ndarray[Any, Any]:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != expected:
        raise ModelError(f"the embeddings returned {matrix.shape} for {expected} text(s)")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: np.ndarray[Any, Any] = matrix / np.maximum(norms, 1e-12)
    return result


def _choose(
    candidates: list[_Candidate],
    query: Sequence[float],
    vectors: Sequence[Sequence[float]],
    max_sentences: int,
    min_similarity: float,
    preface: str,
) -> Extract | None:
    """The top sentences by cosine, near-duplicates skipped, presented in passage order."""
    matrix = _unit_rows(vectors, len(candidates))
    question = _unit_rows([query], 1)[0]
    if question.shape[0] != matrix.shape[1]:
        raise ModelError("the question's and the sentences' vectors differ in length")
    similarity = matrix @ question
    chosen: list[int] = []
    for i in sorted(range(len(candidates)), key=lambda i: -similarity[i]):  # stable on ties
        if len(chosen) == max_sentences or similarity[i] < min_similarity:
            break
        if all(float(matrix[i] @ matrix[j]) <= NEAR_DUPLICATE for j in chosen):
            chosen.append(i)
    if not chosen:
        return None
    citations: list[str] = []
    parts: list[str] = []
    for i in sorted(chosen, key=lambda i: candidates[i][:2]):
        passage_id = candidates[i][3]
        if passage_id not in citations:
            citations.append(passage_id)
        parts.append(f"{candidates[i][2]} [{citations.index(passage_id) + 1}]")
    body = " ".join(parts)
    return Extract(
        text=f"{preface}\n\n{body}" if preface else body,
        citations=tuple(citations),
        sentences=tuple((candidates[i][2], candidates[i][3], float(similarity[i])) for i in chosen),
    )


def extractive_answer(
    question: str,
    passages: Sequence[Passage],
    embeddings: Embeddings,
    *,
    max_sentences: int = 3,
    min_similarity: float = 0.25,
    max_candidates: int = 64,
    preface: str = PREFACE,
) -> Extract | None:
    """The passages' sentences closest to ``question``, cited; None when none is close.

    Embeds the question once and at most ``max_candidates`` sentences in one batch,
    which bounds the cost whatever was retrieved. None means the caller should fall
    to the next level of the ladder (a polite refusal).
    """
    candidates = _prepare(question, passages, max_sentences, min_similarity, max_candidates)
    if not candidates:
        return None
    query = embeddings.embed_query(question)
    vectors = embeddings.embed_documents([c[2] for c in candidates])
    return _choose(candidates, query, vectors, max_sentences, min_similarity, preface)


async def aextractive_answer(
    question: str,
    passages: Sequence[Passage],
    embeddings: Embeddings,
    *,
    max_sentences: int = 3,
    min_similarity: float = 0.25,
    max_candidates: int = 64,
    preface: str = PREFACE,
) -> Extract | None:
    """:func:`extractive_answer` with ``aembed_*``, so a blocking model stays off the loop."""
    candidates = _prepare(question, passages, max_sentences, min_similarity, max_candidates)
    if not candidates:
        return None
    query = await embeddings.aembed_query(question)
    vectors = await embeddings.aembed_documents([c[2] for c in candidates])
    return _choose(candidates, query, vectors, max_sentences, min_similarity, preface)
