"""Splitting documents into chunks that are retrieved and cited.

Markdown is cut at its headings first, so a chunk never straddles two sections and
its id names the section it came from: ``docs/configuration.md#chat-model``, then
``…#chat-model~2`` when a long section needs more than one chunk. Ids therefore
stay stable when another section of the document changes, which is what lets the
golden set name the chunks that hold each answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from graphops.corpus.sources import SourceDocument

__all__ = ["Chunk", "chunk_document", "slugify"]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document."""

    id: str
    doc_id: str
    title: str
    section: str
    text: str

    @property
    def embed_text(self) -> str:
        """What is embedded: the section path gives a short chunk its context."""
        heading = " > ".join(p for p in (self.title, self.section) if p)
        return f"{heading}\n\n{self.text}" if heading else self.text


def slugify(heading: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).strip()
    return re.sub(r"[\s]+", "-", slug) or "section"


def _sections(text: str) -> Iterator[tuple[list[str], str]]:
    """Yield (heading path, body) for each section, ignoring headings in code fences."""
    path: list[str] = []
    body: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        if "\n".join(body).strip() or not path:
            yield list(path), "\n".join(body).strip()
        level = len(match.group(1))
        path = [*path[: level - 1], *[""] * max(0, level - 1 - len(path)), match.group(2)]
        body = []
    yield list(path), "\n".join(body).strip()


def _pieces(text: str, size: int) -> Iterator[str]:
    """Paragraphs, or sentences of a long paragraph, or hard cuts of a long sentence."""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= size:
            yield paragraph
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            for start in range(0, len(sentence), size):
                yield sentence[start : start + size]


def _windows(text: str, size: int, overlap: int) -> list[str]:
    windows: list[str] = []
    current = ""
    for piece in _pieces(text, size):
        if current and len(current) + 2 + len(piece) > size:
            windows.append(current)
            tail = current[-overlap:] if overlap else ""
            tail = tail[tail.find(" ") + 1 :] if " " in tail else tail
            current = f"{tail}\n\n{piece}".strip() if len(tail) + len(piece) < size else piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        windows.append(current)
    return windows


def chunk_document(document: SourceDocument, size: int = 900, overlap: int = 150) -> list[Chunk]:
    """Cut ``document`` into chunks of at most about ``size`` characters."""
    if overlap >= size:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    sections = (
        _sections(document.text) if document.kind == "markdown" else iter([([], document.text)])
    )
    for path, body in sections:
        named = [p for p in path if p]
        if not body:
            continue
        anchor = slugify(named[-1]) if named else "top"
        if anchor in seen:
            seen[anchor] += 1
            anchor = f"{anchor}-{seen[anchor]}"
        else:
            seen[anchor] = 0
        section = " > ".join(named[1:] if named and named[0] == document.title else named)
        for i, window in enumerate(_windows(body, size, overlap)):
            suffix = "" if i == 0 else f"~{i + 1}"
            chunks.append(
                Chunk(
                    f"{document.id}#{anchor}{suffix}", document.id, document.title, section, window
                )
            )
    return chunks
