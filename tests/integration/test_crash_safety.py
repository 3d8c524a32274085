"""kill -9 in the middle of a run: finished nodes keep their spans, and the run resumes."""

from __future__ import annotations

import json
from pathlib import Path

from graphops.checkpoint import SqlSpanStore
from graphops.db import current
from graphops.settings import Settings
from tests.integration.support import ROOT, kill_after_retrieve, run_graphops, upgraded_sqlite


def test_kill_9_keeps_finished_spans_and_resume_continues(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    url, env = upgraded_sqlite(tmp_path, local_settings)
    store = SqlSpanStore(url)
    kill_after_retrieve(env, store, "crash-1")
    assert current(url) == "0005"

    (trace_id,) = store.traces("crash-1")
    stored = {s.name for s in store.spans(trace_id)}
    assert {"guard", "cache_lookup", "generate_query_or_respond", "retrieve"} <= stored
    assert "generate_answer" not in stored
    assert not any(s.parent_span_id is None for s in store.spans(trace_id))  # the run never ended

    resumed = run_graphops(
        "ask", "--thread", "crash-1", "--resume", "--json", env=env, cwd=ROOT, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["answer"].strip()
    assert result["sources"]
    nodes = [n["node"] for n in result["nodes"]]
    assert nodes[0] == "grade_documents"  # picked up after the last checkpoint, not from the start
    assert "generate_query_or_respond" not in nodes
    assert nodes[-1] == "settle"
    assert len(store.traces("crash-1")) == 2
