from __future__ import annotations

from pathlib import Path

import pytest

from graphops.corpus import CorpusRetriever
from graphops.models import ScriptedChatModel
from graphops.observe import NodeTimer
from graphops.prompts import PromptLibrary
from graphs.agentic_rag import RagDeps, build_agentic_rag

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_timer_records_each_node_and_its_tokens(retriever: CorpusRetriever) -> None:
    replies = ['{"small_talk": false}', *['{"relevant": "yes"}'] * 3, "four word answer here"]
    chat = ScriptedChatModel(replies=list(replies))
    deps = RagDeps(chat=chat, retriever=retriever, prompts=PromptLibrary(ROOT / "prompts"), top_k=3)
    timer = NodeTimer()
    await (
        build_agentic_rag(deps)
        .compile()
        .ainvoke({"question": "cache keys"}, {"callbacks": [timer]})
    )
    assert [t.node for t in timer.timings] == [
        "generate_query_or_respond",
        "retrieve",
        "grade_documents",
        "generate_answer",
    ]
    assert all(t.seconds > 0 for t in timer.timings)
    assert [t.llm_calls for t in timer.timings] == [1, 0, 3, 1]
    # scripted usage: one token per word, prompt and reply
    answer_call = chat.calls[-1]
    expected = sum(len(m.text.split()) for m in answer_call) + 4
    assert timer.timings[-1].tokens == expected
    assert timer.total_tokens == sum(t.tokens for t in timer.timings)
