from __future__ import annotations

import pytest

from graphops.corpus.chunking import chunk_document, slugify
from graphops.corpus.sources import SourceDocument


def doc(text: str, kind: str = "markdown") -> SourceDocument:
    return SourceDocument("docs/x.md", "X", text, kind)  # type: ignore[arg-type]


def test_slugify_like_github() -> None:
    assert slugify("Chat model (local)") == "chat-model-local"
    assert slugify("`top_k` and k") == "top_k-and-k"
    assert slugify("!!!") == "section"


def test_sections_become_chunks_with_anchor_ids() -> None:
    chunks = chunk_document(
        doc("# X\n\nIntro.\n\n## Chat model\n\nUse local.\n\n### Gemini\n\nKey.")
    )
    assert [c.id for c in chunks] == ["docs/x.md#x", "docs/x.md#chat-model", "docs/x.md#gemini"]
    assert [c.section for c in chunks] == ["", "Chat model", "Chat model > Gemini"]
    assert chunks[2].embed_text.startswith("X > Chat model > Gemini\n\n")


def test_duplicate_headings_get_numbered_anchors() -> None:
    chunks = chunk_document(doc("## Usage\n\na\n\n## Usage\n\nb"))
    assert [c.id for c in chunks] == ["docs/x.md#usage", "docs/x.md#usage-1"]


def test_headings_inside_code_fences_are_text() -> None:
    chunks = chunk_document(doc("## Shell\n\n```bash\n# not a heading\necho hi\n```\n"))
    assert len(chunks) == 1
    assert "# not a heading" in chunks[0].text


def test_long_sections_split_with_overlap_and_suffixes() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(12))
    chunks = chunk_document(doc(f"## Long\n\n{paragraphs}"), size=400, overlap=80)
    assert len(chunks) > 3
    assert chunks[0].id == "docs/x.md#long"
    assert chunks[1].id == "docs/x.md#long~2"
    assert all(len(c.text) <= 400 + 80 for c in chunks)
    # the start of each later chunk repeats the end of the one before it
    assert chunks[1].text.split("\n\n")[0] in chunks[0].text


def test_one_huge_sentence_is_cut_hard() -> None:
    chunks = chunk_document(doc("x" * 2500, kind="text"), size=1000, overlap=0)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]
    assert chunks[0].id == "docs/x.md#top"


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ValueError, match="smaller"):
        chunk_document(doc("text"), size=100, overlap=100)
