"""The reference graph on the embedded defaults: real SmolLM2, real MiniLM, real index of docs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphops.corpus import CorpusRetriever
from graphops.models.local_embeddings import LocalMiniLMEmbeddings
from graphops.settings import Settings
from graphs.agentic_rag import RagDeps, build_agentic_rag
from tests.integration.support import ROOT

pytestmark = pytest.mark.anyio

GOLDEN = [json.loads(line) for line in (ROOT / "evals" / "golden.jsonl").read_text().splitlines()]


def golden(question_id: str) -> dict[str, Any]:
    return next(item for item in GOLDEN if item["id"] == question_id)


@pytest.mark.parametrize("question_id", ["q02", "q12"])
async def test_answers_a_docs_question_citing_a_relevant_source(
    local_settings: Settings, docs_index: Path, question_id: str
) -> None:
    item = golden(question_id)
    app = build_agentic_rag(RagDeps.from_settings(local_settings)).compile()
    state = await app.ainvoke({"question": item["question"]})
    assert state["route"] == "retrieve"
    assert state["answer"].strip()
    assert state["sources"]
    cited_docs = {source.split("#")[0] for source in state["sources"]}
    assert cited_docs & set(item["doc_ids"]), (state["sources"], item["doc_ids"])
    usage = [m.usage_metadata for m in state["messages"] if getattr(m, "usage_metadata", None)]
    assert usage and usage[-1]["output_tokens"] > 0


async def test_small_talk_is_answered_without_retrieval(
    local_settings: Settings, docs_index: Path
) -> None:
    app = build_agentic_rag(RagDeps.from_settings(local_settings)).compile()
    state = await app.ainvoke({"question": "hello!"})
    assert state["route"] == "respond"
    assert state["answer"].strip()
    assert state["sources"] == []


def test_retrieval_quality_on_the_golden_set(
    docs_index: Path, local_embeddings: LocalMiniLMEmbeddings
) -> None:
    """A floor, not a benchmark: hit@3 and MRR of the retriever alone over every question."""
    retriever = CorpusRetriever(index_dir=docs_index, embeddings=local_embeddings, k=10)
    hits, reciprocal = 0, 0.0
    for item in GOLDEN:
        ranked = [doc.metadata["id"] for doc in retriever.invoke(item["question"])]
        rank = next((i for i, chunk in enumerate(ranked, 1) if chunk in item["chunk_ids"]), None)
        hits += rank is not None and rank <= 3
        reciprocal += 1 / rank if rank else 0.0
    hit_at_3, mrr = hits / len(GOLDEN), reciprocal / len(GOLDEN)
    print(f"golden set: {len(GOLDEN)} questions, hit@3 {hit_at_3:.3f}, MRR {mrr:.3f}")
    assert hit_at_3 >= 0.85
    assert mrr >= 0.75


async def test_observed_graph_spans_carry_the_models_token_counts(
    local_settings: Settings, docs_index: Path
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    from graphops.builder import build_observed_graph
    from graphops.observe import Metrics, Telemetry
    from graphops.policies import Ops

    exporter = InMemorySpanExporter()
    telemetry = Telemetry(
        exporters=[SimpleSpanProcessor(exporter)], metrics=Metrics(CollectorRegistry())
    )
    plain = build_agentic_rag(RagDeps.from_settings(local_settings))
    app = build_observed_graph(plain, ops=Ops.all_steps(telemetry=telemetry), name="agentic_rag")
    state = await app.ainvoke({"question": golden("q02")["question"]})
    spans = exporter.get_finished_spans()
    chats = [s for s in spans if s.name == "chat SmolLM2-135M-Instruct.Q4_1"]
    assert chats
    for span in chats:
        assert span.attributes["gen_ai.provider.name"] == "llama_cpp"
        assert span.attributes["gen_ai.request.temperature"] == 0.0
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
    answer_node = next(s for s in spans if s.name == "generate_answer")
    (answer_chat,) = [s for s in chats if s.parent.span_id == answer_node.context.span_id]
    usage = state["messages"][-1].usage_metadata
    assert answer_chat.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert answer_chat.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert len({s.context.trace_id for s in spans}) == 1
    telemetry.shutdown()
