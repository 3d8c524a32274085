"""Metrics parsed from the real exposition format, and JSON log lines tied to real spans."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from graphops.builder import build_observed_graph
from graphops.corpus import CorpusRetriever
from graphops.models import HashEmbeddings, ScriptedChatModel
from graphops.observe import Telemetry, metrics_app, start_metrics_server
from graphops.observe.logs import JsonFormatter, TextFormatter, logger
from graphops.policies import CachePolicy, GuardPolicy, Ops
from graphops.prompts import PromptLibrary
from graphs.agentic_rag import RagDeps, build_agentic_rag
from tests.conftest import rag_replies

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def run_rag(
    telemetry: Telemetry, index_dir: Path, user: str | None = "ann"
) -> dict[str, Any]:
    retriever = CorpusRetriever(index_dir=index_dir, embeddings=HashEmbeddings(), k=2)
    chat = ScriptedChatModel(respond=rag_replies)
    deps = RagDeps(chat=chat, retriever=retriever, prompts=PromptLibrary(ROOT / "prompts"), top_k=2)
    app = build_observed_graph(
        build_agentic_rag(deps),
        ops=Ops(guard=GuardPolicy(), cache=CachePolicy(), telemetry=telemetry),
        name="rag",
    )
    config = {"configurable": {"thread_id": "t"}, "metadata": {"user": user} if user else {}}
    return dict(await app.ainvoke({"question": "What are the cache keys?"}, config))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_parse_and_agree_with_the_spans(
    telemetry: Telemetry, exporter: Any, index_dir: Path
) -> None:
    await run_rag(telemetry, index_dir)
    await run_rag(telemetry, index_dir, user=None)
    text = generate_latest(telemetry.metrics.registry).decode()
    values = samples(text)
    assert values[("graphops_runs_total", frozenset({("graph", "rag"), ("status", "ok")}))] == 2
    node = frozenset({("graph", "rag"), ("node", "grade_documents"), ("status", "ok")})
    assert values[("graphops_node_duration_seconds_count", node)] == 2
    calls = frozenset({("provider", "scripted"), ("model", "scripted"), ("status", "ok")})
    assert values[("graphops_llm_calls_total", calls)] == 8
    spans = exporter.get_finished_spans()
    input_tokens = sum(s.attributes.get("gen_ai.usage.input_tokens", 0) for s in spans)
    usage = frozenset(
        {
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_provider_name", "scripted"),
            ("gen_ai_request_model", "scripted"),
            ("gen_ai_token_type", "input"),
        }
    )
    assert values[("gen_ai_client_token_usage_sum", usage)] == input_tokens
    assert values[("gen_ai_client_token_usage_count", usage)] == 8
    by_class = {
        dict(labels)["user_class"]: value
        for (name, labels), value in values.items()
        if name == "graphops_tokens_total" and dict(labels)["type"] == "input"
    }
    assert set(by_class) == {"user", "anonymous"}
    assert sum(by_class.values()) == input_tokens
    assert "ann" not in text  # users are classes in labels, never ids
    # the guard and the cache lookup count every run they see
    allowed = frozenset({("outcome", "allowed"), ("reason", "")})
    assert values[("graphops_guard_decisions_total", allowed)] == 2
    missed = frozenset({("layer", "exact"), ("result", "miss")})
    assert values[("graphops_cache_requests_total", missed)] == 2
    assert "# TYPE graphops_spans_dropped" in text
    for unfilled in ("prompt_variant_runs",):
        assert f"graphops_{unfilled}" not in text  # registered by the issues that fill them


async def test_metrics_app_and_server_serve_the_exposition(
    telemetry: Telemetry, index_dir: Path
) -> None:
    await run_rag(telemetry, index_dir)
    app = metrics_app(telemetry.metrics.registry)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://m"
    ) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'graphops_runs_total{graph="rag",status="ok"} 1.0' in response.text
    server = start_metrics_server(0, registry=telemetry.metrics.registry)
    try:
        async with httpx.AsyncClient() as client:
            served = await client.get(f"http://127.0.0.1:{server.server_port}/metrics")
        assert 'graphops_runs_total{graph="rag",status="ok"} 1.0' in served.text
    finally:
        server.shutdown()


def test_multiprocess_mode_sums_over_processes(tmp_path: Path) -> None:
    worker = textwrap.dedent("""
        from graphops.observe.metrics import default_metrics
        default_metrics().runs.labels("g", "ok").inc(3)
    """)
    reader = textwrap.dedent("""
        from prometheus_client import generate_latest
        from graphops.observe.metrics import exposition_registry
        print(generate_latest(exposition_registry()).decode())
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", reader],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'graphops_runs_total{graph="g",status="ok"} 6.0' in out


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_every_log_line_is_json_with_the_ids_of_a_real_span(
    telemetry: Telemetry, exporter: Any, index_dir: Path, log_lines: io.StringIO
) -> None:
    await run_rag(telemetry, index_dir)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    spans = {
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}"): s
        for s in exporter.get_finished_spans()
    }
    assert lines
    for line in lines:
        assert (line["trace_id"], line["span_id"]) in spans
        assert line["thread_id"] == "t"
        assert line["user"] == "ann"
    events = [line["event"] for line in lines]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert {"node_end", "llm_call", "retrieval", "route"} <= set(events)
    llm = next(line for line in lines if line["event"] == "llm_call")
    assert spans[(llm["trace_id"], llm["span_id"])].name == "chat scripted"
    assert llm["input_tokens"] > 0 and llm["latency_ms"] >= 0 and llm["cost"] == 0.0
    node = next(line for line in lines if line["event"] == "node_end")
    assert spans[(node["trace_id"], node["span_id"])].name == node["node"]


def test_text_format_is_readable() -> None:
    record = logging.LogRecord("graphops", logging.INFO, "", 0, "node_end", None, None)
    record.graphops = {"node": "retrieve", "latency_ms": 3.5, "user": None}
    assert TextFormatter().format(record) == "info  node_end node=retrieve latency_ms=3.5"
