"""A LangChain model-call cache for evaluation re-runs and replays.

:class:`ModelCallCache` is a :class:`~langchain_core.caches.BaseCache`: give it
to a chat model (``ChatOpenAI(..., cache=ModelCallCache("calls.sqlite"))``) or
globally (``langchain_core.globals.set_llm_cache``) and a call whose prompt and
``llm_string`` (LangChain's name for the model class and every generation
parameter) were seen before is answered from the file, so re-running an
evaluation costs no model calls.

It is for evaluations and replays, where identical calls should give identical
answers. It is **not** the production answer cache (:mod:`graphops.cache`):
calls with ``temperature > 0`` are cached too, and replayed as the one answer
first given, with no TTL, tenant or corpus version in the key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from langchain_core._api import suppress_langchain_beta_warning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads
from langchain_core.load.serializable import Serializable
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk

from graphops.db.engine import BUSY_TIMEOUT_S, SQLITE_PRAGMAS
from graphops.db.sqlite_file import check_sqlite_file

__all__ = ["ModelCallCache", "model_call_key"]

_SCHEME = "graphops-model-call-v1"
_ALLOWED: list[type[Serializable]] = [
    Generation,
    GenerationChunk,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS graphops_model_calls ("
    "key TEXT PRIMARY KEY, generations TEXT NOT NULL, created REAL NOT NULL)"
)


def model_call_key(prompt: str, llm_string: str) -> str:
    """The sha256 of the canonical JSON of ``(prompt, llm_string)``, named by its scheme."""
    encoded = json.dumps([_SCHEME, prompt, llm_string], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


class ModelCallCache(BaseCache):
    """Model calls answered from a SQLite file (see the module docstring).

    ``path`` is the file (its folder is made; WAL mode and a bounded busy timeout,
    like every SQLite connection graphops opens, so several processes may share
    it); ``None`` keeps the cache in memory, for tests. Generations are stored as
    LangChain's serialised JSON and revived allowing only generation and AI
    message classes. Safe to share between threads; the async methods run the
    SQLite call in a worker thread.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            check_sqlite_file(f"sqlite:///{self.path}")
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path),
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,  # autocommit: every statement is its own transaction
            check_same_thread=False,  # shared between threads, under self._lock
        )
        with self._lock:
            for pragma in SQLITE_PRAGMAS:
                self._connection.execute(pragma)
            self._connection.execute(_SCHEMA)

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations stored for this call, or None."""
        with self._lock:
            row = self._connection.execute(
                "SELECT generations FROM graphops_model_calls WHERE key = ?",
                (model_call_key(prompt, llm_string),),
            ).fetchone()
        if row is None:
            return None
        try:
            with suppress_langchain_beta_warning():
                revived = loads(row[0], allowed_objects=_ALLOWED)
        except (ValueError, TypeError, KeyError, NotImplementedError):
            return None  # written by an incompatible LangChain: call the model again
        if not isinstance(revived, list) or not all(isinstance(g, Generation) for g in revived):
            return None
        return revived

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations of this call, replacing any stored before."""
        value = dumps(list(return_val))
        with self._lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO graphops_model_calls (key, generations, created) "
                "VALUES (?, ?, ?)",
                (model_call_key(prompt, llm_string), value, time.time()),
            )

    def clear(self, **kwargs: Any) -> None:
        """Forget every stored call."""
        with self._lock:
            self._connection.execute("DELETE FROM graphops_model_calls")

    def __len__(self) -> int:
        with self._lock:
            row = self._connection.execute("SELECT COUNT(*) FROM graphops_model_calls").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connection; the cache cannot be used after."""
        with self._lock:
            self._connection.close()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """:meth:`lookup`, off the event loop."""
        return await anyio.to_thread.run_sync(self.lookup, prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """:meth:`update`, off the event loop."""
        generations: Sequence[Generation] = list(return_val)
        await anyio.to_thread.run_sync(self.update, prompt, llm_string, generations)

    async def aclear(self, **kwargs: Any) -> None:
        """:meth:`clear`, off the event loop."""
        await anyio.to_thread.run_sync(self.clear)
