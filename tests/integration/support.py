"""Helpers the integration tests share: the ``graphops`` subprocess, small test graphs.

Fixtures live in ``conftest.py``; this module holds plain functions and types, imported
as ``from tests.integration.support import ...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import BaseMessage
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphops.checkpoint import SqlSpanStore
from graphops.prompts import PromptSource, aprompt
from graphops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


def run_graphops(
    *argv: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: int | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``graphops argv`` in a subprocess: this environment plus ``env``, output as text."""
    return subprocess.run(
        [GRAPHOPS, *argv],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def graphops_for(
    settings: Settings, *argv: str, stdin: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``graphops`` from the repository root on ``settings``' data folder and corpus."""
    environment = {
        "GRAPHOPS_DATA_DIR": str(settings.data_dir),
        "GRAPHOPS_CORPUS": ",".join(settings.corpus),
        "GRAPHOPS_N_THREADS": "2",
        **env,
    }
    return run_graphops(*argv, env=environment, cwd=ROOT, stdin=stdin, timeout=300)


def graphops_on(
    url: str, data: Path, *argv: str, stdin: int | None = subprocess.DEVNULL, **env: str
) -> subprocess.CompletedProcess[str]:
    """``graphops`` on the database ``url`` and data folder ``data``; stdin not a terminal."""
    environment = {"GRAPHOPS_DATABASE_URL": url, "GRAPHOPS_DATA_DIR": str(data), **env}
    return run_graphops(*argv, env=environment, stdin=stdin)


def upgraded_sqlite(tmp_path: Path, settings: Settings) -> tuple[str, dict[str, str]]:
    """A SQLite database in ``tmp_path`` after ``graphops db upgrade``, and its environment.

    The environment (this process's, plus graphops' variables) uses ``settings``' data
    folder, so the docs index built once per session, and two threads.
    """
    url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    env = {
        **os.environ,
        "GRAPHOPS_DATA_DIR": str(settings.data_dir),  # the docs index built once
        "GRAPHOPS_DATABASE_URL": url,
        "GRAPHOPS_N_THREADS": "2",
    }
    subprocess.run([GRAPHOPS, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    return url, env


def kill_after_retrieve(
    env: dict[str, str], store: SqlSpanStore, thread: str, *options: str
) -> None:
    """``graphops ask [options] --thread thread``, killed -9 once its retrieve span is stored."""
    process = subprocess.Popen(
        [GRAPHOPS, "ask", *options, "--thread", thread, "How do I ingest a URL?"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        names: set[str] = set()
        while "retrieve" not in names:  # written when the node ends, while the run goes on
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no retrieve span ever reached the store"
            time.sleep(0.05)
            names = {s.name for t in store.traces(thread) for s in store.spans(t)}
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


class Notes(TypedDict, total=False):
    """The notes graph's state."""

    text: str
    words: int


def notes_graph() -> StateGraph[Notes]:
    """clean → count: two plain Python nodes, a cheap run to store."""

    def clean(state: Notes) -> Notes:
        return {"text": state["text"].strip().lower()}

    def count(state: Notes) -> Notes:
        return {"words": len(state["text"].split())}

    graph = StateGraph(Notes)
    graph.add_sequence([clean, count])
    graph.add_edge(START, "clean")
    graph.add_edge("count", END)
    return graph


class QA(TypedDict, total=False):
    """The re-run tests' state: a question, a draft of the answer, the answer."""

    question: str
    draft: str
    answer: str


def echo(messages: list[BaseMessage]) -> str:
    """A scripted model's reply: ``echo`` and the last message."""
    return f"echo {messages[-1].text}"


QANode = Callable[[QA], Awaitable[QA]]


def qa_nodes(chat: Any, prompts: PromptSource | None = None) -> tuple[QANode, QANode]:
    """The nodes ``write`` and ``polish`` on ``chat``.

    With ``prompts``, polish formats its message with the prompt "polish".
    """

    async def write(state: QA) -> QA:
        return {"draft": (await chat.ainvoke(state["question"])).text}

    async def polish(state: QA) -> QA:
        if prompts is None:
            return {"answer": (await chat.ainvoke("polish: " + state["draft"])).text}
        chain = await aprompt(prompts, "polish") | chat
        return {"answer": (await chain.ainvoke({"draft": state["draft"]})).text}

    return write, polish


@contextlib.contextmanager
def private_database(prefix: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A fresh database of the caller's own on the local Postgres: (admin connection, name).

    Skipped when Postgres does not answer, failed instead when ``CI`` is set; dropped
    afterwards, with its pooled connections closed first.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Postgres on 127.0.0.1:5432 ({exc})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin, name
        finally:
            from graphops.db import engine_for

            engine_for(f"postgresql://postgres@127.0.0.1:5432/{name}").dispose()
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
