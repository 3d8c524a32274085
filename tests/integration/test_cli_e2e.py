"""``graphops`` as a user runs it: a real subprocess on the embedded defaults."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from graphops.settings import Settings
from tests.integration.support import ROOT, graphops_for


def graphops(settings: Settings, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The shared runner, stdin not a terminal, as in CI: destructive commands need --yes."""
    return graphops_for(settings, *argv, stdin=subprocess.DEVNULL, **env)


def test_ask_prints_answer_sources_and_nodes(local_settings: Settings, docs_index: Path) -> None:
    done = graphops(local_settings, "ask", "Which environment variable selects the chat model?")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Sources:\n  [1] " in out
    assert "docs/" in out.split("Sources:")[1]
    tree = out.split("Trace ")[1]
    assert tree.splitlines()[1].startswith("invoke_agent agentic_rag")
    for node in (
        "├─ guard",
        "├─ generate_query_or_respond",
        "├─ retrieve",
        "│  └─ retrieval",
        "├─ grade_documents",
        "├─ generate_answer",
        "└─ settle",
    ):
        assert node in tree
    assert "chat SmolLM2-135M-Instruct.Q4_1" in tree
    assert "embeddings all-MiniLM-L6-v2" in tree
    assert "Traceback" not in done.stderr


def test_ask_json_and_thread_continuation(local_settings: Settings, docs_index: Path) -> None:
    first = graphops(local_settings, "ask", "--json", "--user", "ann", "hello!")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["answer"]
    assert result["thread_id"]
    assert result["tokens"] > 0
    second = graphops(
        local_settings, "ask", "--json", "--thread", result["thread_id"], "How do I ingest a URL?"
    )
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["thread_id"] == result["thread_id"]
    assert again["route"] == "retrieve"
    assert again["sources"]
    assert {"node", "seconds", "tokens"} <= set(again["nodes"][0])
    assert [n["node"] for n in again["nodes"]][:3] == [
        "guard",
        "cache_lookup",
        "generate_query_or_respond",
    ]
    assert again["tokens"] == sum(n["tokens"] for n in again["nodes"])
    assert len(again["trace_id"]) == 32


def test_ask_stream_prints_the_answer_as_it_comes(
    local_settings: Settings, docs_index: Path
) -> None:
    done = graphops(local_settings, "ask", "--stream", "What does graphops ingest do?")
    assert done.returncode == 0, done.stderr
    answer = done.stdout.split("\nSources:")[0].split("\nTrace ")[0]
    assert answer.strip()
    assert "\nTrace " in done.stdout


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow.md":
                time.sleep(2)
            body = b"# Remote page\n\n## Fetching\n\ngraphops can ingest pages served over HTTP.\n"
            self.send_response(200)
            self.send_header("content-type", "text/markdown; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_ingest_url_and_timeout(tmp_path: Path, local_settings: Settings, http_server: str) -> None:
    settings = local_settings.model_copy(update={"data_dir": tmp_path / "data"})
    done = graphops(settings, "ingest", f"{http_server}/page.md")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("added 1, updated 0, removed 0, unchanged 0 documents; 1 chunks")
    manifest = json.loads((tmp_path / "data" / "index" / "manifest.json").read_text())
    assert list(manifest["documents"]) == [f"{http_server}/page.md"]

    slow = graphops(settings, "ingest", f"{http_server}/slow.md", GRAPHOPS_HTTP_READ_TIMEOUT="0.5")
    assert slow.returncode == 1
    assert slow.stderr == f"graphops: error: {http_server}/slow.md: no response within 0.5 s\n"
    # the failed ingest left the index as it was
    assert json.loads((tmp_path / "data" / "index" / "manifest.json").read_text()) == manifest


def test_replay_and_a_recorded_rerun(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    env = {
        "GRAPHOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite'}",
        "GRAPHOPS_CAPTURE_CONTENT": "true",
    }
    # a new SQLite database gets graphops' schema on first use: the thread is simply unknown
    refused = graphops(local_settings, "replay", "cli-replay", **env)
    assert refused.returncode == 2 and "no stored run for thread 'cli-replay'" in refused.stderr
    assert graphops(local_settings, "db", "upgrade", **env).returncode == 0
    asked = graphops(
        local_settings,
        "ask",
        "--json",
        "--thread",
        "cli-replay",
        "How are chunk ids formed?",
        **env,
    )
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)["answer"]

    shown = graphops(
        local_settings, "replay", "cli-replay", "--html", str(tmp_path / "r.html"), **env
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("thread cli-replay: 1 run(s)")
    assert "├─ generate_answer" in shown.stdout
    assert "state after each step:" in shown.stdout
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")

    rerun = graphops(local_settings, "replay", "cli-replay", "--rerun", "--recorded", **env)
    assert rerun.returncode == 0, rerun.stderr
    assert "with recorded LLM outputs" in rerun.stdout
    assert "answer: same" in rerun.stdout
    assert "chat recorded:SmolLM2-135M-Instruct.Q4_1" in rerun.stdout
    assert "embeddings all-MiniLM-L6-v2" in rerun.stdout  # re-runs are observed like asks
    assert answer.strip()
    missing = graphops(local_settings, "replay", "nobody", **env)
    assert missing.returncode == 2 and "no stored run for thread 'nobody'" in missing.stderr


def test_a_rerun_with_another_prompt_version(
    tmp_path: Path, local_settings: Settings, docs_index: Path
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for source in (ROOT / "prompts").glob("*.md"):
        (prompts / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    env = {
        "GRAPHOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite'}",
        "GRAPHOPS_PROMPTS_DIR": str(prompts),
    }
    assert graphops(local_settings, "db", "upgrade", **env).returncode == 0
    question = "How are chunk ids formed?"
    asked = graphops(local_settings, "ask", "--thread", "p-1", "--user", "cy", question, **env)
    assert asked.returncode == 0, asked.stderr
    listed = graphops(local_settings, "runs", "--user", "cy", **env).stdout.splitlines()
    assert listed[0].endswith("prompts")
    assert "route@1" in listed[1] and "answer@1" in listed[1]  # published on first use

    answer = prompts / "answer.md"
    answer.write_text(
        answer.read_text(encoding="utf-8").replace(
            "Be brief: at most four sentences.", "Answer in one sentence, in French."
        ),
        encoding="utf-8",
    )
    synced = graphops(local_settings, "prompts", "sync", "--actor", "ci", **env)
    assert "answer: v2 (new)" in synced.stdout.splitlines(), synced.stderr

    unknown = graphops(local_settings, "replay", "p-1", "--rerun", "--prompt", "answer=9", **env)
    assert unknown.returncode == 2 and "prompt 'answer' has no version 9" in unknown.stderr
    assert len(graphops(local_settings, "runs", **env).stdout.splitlines()) == 2  # no run added

    rerun = graphops(
        local_settings,
        "replay",
        "p-1",
        "--rerun",
        "--from",
        "generate_answer",
        "--prompt",
        "answer=2",
        **env,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "(next: generate_answer)" in rerun.stdout
    change = next(line for line in rerun.stdout.splitlines() if line.startswith("prompts: "))
    assert change.endswith("→ answer@2")
    assert "answer@1" in change
    runs = graphops(local_settings, "runs", **env).stdout.splitlines()
    assert len(runs) == 3 and "answer@2" in runs[1] and "answer@1" in runs[2]
    assert " cy " in runs[1]  # a re-run is still the original user's run
    # the node line names the prompt version it ran (after the budget it had left)
    assert "├─ generate_answer" in rerun.stdout and "prompt: answer@2]" in rerun.stdout


def test_one_url_moves_runs_to_postgres(
    local_settings: Settings, docs_index: Path, postgres_url: str
) -> None:
    from graphops.db import downgrade

    downgrade(postgres_url, "base")
    env = {"GRAPHOPS_DATABASE_URL": postgres_url}
    assert graphops(local_settings, "db", "upgrade", **env).returncode == 0
    asked = graphops(local_settings, "ask", "--thread", "pg-1", "--user", "bo", "hello!", **env)
    assert asked.returncode == 0, asked.stderr
    listed = graphops(local_settings, "runs", "--user", "bo", **env)
    assert listed.returncode == 0 and "pg-1" in listed.stdout and " bo" in listed.stdout
    assert "route@1 respond@1" in listed.stdout  # the prompt registry is in Postgres too
    assert "route" in graphops(local_settings, "prompts", "list", **env).stdout
    shown = graphops(local_settings, "replay", "pg-1", **env)
    assert shown.returncode == 0, shown.stderr
    assert "├─ guard" in shown.stdout and "[guard: allowed]" in shown.stdout
    assert "state after each step:" in shown.stdout
    kept = graphops(local_settings, "runs", "prune", "--older-than", "1d", **env)
    assert kept.stdout.strip() == "deleted 0 thread(s) with their checkpoints, 0 span(s)"
    unasked = graphops(local_settings, "runs", "prune", "--older-than", "0s", **env)
    assert unasked.returncode == 2 and "add --yes to go ahead" in unasked.stderr
    assert "1 thread(s) with their checkpoints: pg-1" in unasked.stdout  # shown, not deleted
    assert graphops(local_settings, "replay", "pg-1", **env).returncode == 0
    assert "pg-1" in graphops(local_settings, "runs", **env).stdout
    pruned = graphops(local_settings, "runs", "prune", "--older-than", "0s", "--yes", **env)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[-1].startswith("deleted 1 thread(s)")
    gone = graphops(local_settings, "replay", "pg-1", **env)
    assert gone.returncode == 2 and "no stored run for thread 'pg-1'" in gone.stderr
    no_flag = graphops(local_settings, "runs", "prune", **env)
    assert no_flag.returncode == 2 and "needs --older-than" in no_flag.stderr


def test_ask_applies_the_limits_file_across_processes_and_refuses_with_exit_1(
    local_settings: Settings, docs_index: Path, shared_redis_url: str, tmp_path: Path
) -> None:
    """Each ``graphops ask`` is its own process: the limit holds because Redis counts it."""
    import uuid

    limits = tmp_path / "limits.yaml"
    limits.write_text("requests:\n  - {per: user, rate: 1/hour}\n")
    user = f"cli-test-{uuid.uuid4().hex}"
    env = {"GRAPHOPS_LIMITS_FILE": str(limits), "GRAPHOPS_REDIS_URL": shared_redis_url}
    try:
        first = graphops(local_settings, "ask", "--user", user, "hello!", **env)
        assert first.returncode == 0, first.stderr
        second = graphops(local_settings, "ask", "--user", user, "hello again!", **env)
        assert second.returncode == 1
        logged, error = second.stderr.strip().splitlines()  # the guard's one log line, then ours
        assert json.loads(logged)["event"] == "run refused"
        assert json.loads(logged)["reason"] == "rate_limited"
        assert error.startswith("graphops: error: too many requests for this user: 1 per 1 hour")
        assert "retry in" in error
        bad = graphops(local_settings, "ask", "--user", user, "x" * 9000, **env)
        assert bad.returncode == 2  # refused before any model loads: the guard's own check
        assert "9000 bytes long in UTF-8; the limit is 8192" in bad.stderr
    finally:
        reset = graphops(local_settings, "limits", "reset", "--user", user, **env)
        assert reset.returncode == 0, reset.stderr
