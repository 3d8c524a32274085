"""Nodes never block the event loop: the check ``langgraph dev`` makes, made in CI.

blockbuster raises on a blocking call (file I/O, sleeps, sockets) made on the loop
itself; work in worker threads is allowed. The graph is built from a factory that
reads files and builds an index, exactly what the default dependencies do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from graphops.corpus import CorpusRetriever
from graphops.corpus.ensure import ensure_index
from graphops.models import HashEmbeddings, ScriptedChatModel
from graphops.prompts import PromptLibrary
from graphops.settings import Settings
from graphs.agentic_rag import RagDeps, build_agentic_rag

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx() as detector:
        yield detector


def _replies(messages: list[object]) -> str:
    system = messages[0].text  # type: ignore[attr-defined]
    if system.startswith("Is the message"):
        return json.dumps({"small_talk": False})
    if system.startswith("Say whether"):
        return json.dumps({"relevant": "yes"})
    return "An answer [1]."


async def test_the_lazily_built_graph_runs_without_blocking_the_loop(
    tmp_path: Path, corpus_dir: Path, blockbuster: BlockBuster
) -> None:
    def factory() -> RagDeps:
        settings = Settings(data_dir=tmp_path / "data", corpus=(str(corpus_dir),))
        embeddings = HashEmbeddings()
        ensure_index(settings, embeddings)
        return RagDeps(
            chat=ScriptedChatModel(respond=_replies),  # type: ignore[arg-type]
            retriever=CorpusRetriever(index_dir=settings.index_dir, embeddings=embeddings),
            prompts=PromptLibrary(ROOT / "prompts"),
        )

    app = build_agentic_rag(factory).compile()
    for question in ("What are the cache keys?", "And the chunk size?"):
        state = await app.ainvoke({"question": question})
        assert state["answer"] == "An answer [1]."
        assert state["sources"]


async def test_blockbuster_does_catch_blocking_io(blockbuster: BlockBuster, tmp_path: Path) -> None:
    """The detector is live in this test module (so the test above can fail)."""
    from blockbuster import BlockingError

    with pytest.raises(BlockingError):
        (tmp_path / "x").write_text("blocking")
