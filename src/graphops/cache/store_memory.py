"""The in-memory answer store: one process's cache, and the fake the tests use.

Bounded: past ``max_entries`` the oldest entry goes first (insertion order,
which for a cache of answers is close to least recently stored). Thread-safe:
a sync node's worker thread and the event loop may both reach it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection

from graphops.cache.store import CacheEntry, Observation, StoreStats
from graphops.errors import ConfigurationError

__all__ = ["MemoryAnswerStore"]


class MemoryAnswerStore:
    """An :class:`~graphops.cache.store.AnswerStore` in a dict (see the module docstring)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(
                f"MemoryAnswerStore.max_entries is {max_entries!r}: give a whole number, at least 1"
            )
        self.max_entries = max_entries
        self._entries: dict[str, CacheEntry] = {}
        self._by_doc: defaultdict[str, set[str]] = defaultdict(set)
        self._feedback: defaultdict[str, list[Observation]] = defaultdict(list)
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> CacheEntry | None:
        entry = self._entries.get(key)  # a dict read is atomic: no lock on the hot path
        if entry is None or entry.expired(now):
            return None
        return entry

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._drop(entry.key)
            while len(self._entries) >= self.max_entries:
                self._drop(next(iter(self._entries)))
            self._entries[entry.key] = entry
            for doc in entry.docs:
                self._by_doc[doc].add(entry.key)

    def purge(
        self,
        *,
        tenant: str | None = None,
        docs: Collection[str] | None = None,
        expired_before: float | None = None,
    ) -> list[str]:
        with self._lock:
            if docs is not None:
                keys = {k for d in docs for k in self._by_doc.get(d, ())}
            else:
                keys = set(self._entries)
            gone = [
                k
                for k in keys
                if (tenant is None or self._entries[k].tenant == tenant)
                and (expired_before is None or self._entries[k].expired(expired_before))
            ]
            for key in gone:
                self._drop(key)
            return gone

    def stats(self, now: float, tenant: str | None = None) -> StoreStats:
        with self._lock:
            entries = [e for e in self._entries.values() if tenant is None or e.tenant == tenant]
            live = [e for e in entries if not e.expired(now)]
            tenants: dict[str, int] = {}
            for e in live:
                tenants[e.tenant or "-"] = tenants.get(e.tenant or "-", 0) + 1
            docs = {d for e in live for d in e.docs}
            return StoreStats(len(live), len(entries) - len(live), tenants, len(docs))

    def observe(self, key: str, observation: Observation) -> None:
        with self._lock:
            if key in self._entries:
                self._feedback[key].append(observation)

    def observations(self, key: str) -> list[Observation]:
        with self._lock:
            return list(self._feedback.get(key, ()))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        self._feedback.pop(key, None)
        if entry is None:
            return
        for doc in entry.docs:
            keys = self._by_doc.get(doc)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_doc[doc]
