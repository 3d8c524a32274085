"""Where cached answers live: the :class:`AnswerStore` protocol and what it stores.

The exact tier is a key-value store of :class:`CacheEntry` by exact key; the
semantic tier only points at its keys, so an entry's expiry, its purge and its
feedback are in one place whichever tier finds it. A store also keeps the
reverse index from document id to the entries whose answers cited it, so a
re-ingest can purge exactly those, and per-entry feedback (was a semantic hit
at this similarity right?) from which each entry learns its own threshold.

Implementations: :class:`~graphops.cache.store_memory.MemoryAnswerStore` (one
process; the fake for tests) and :class:`~graphops.cache.store_sql.SqlAnswerStore`
(SQLite by default, Postgres by URL).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["AnswerStore", "CacheEntry", "Observation", "StoreStats"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer.

    ``values`` is the state update a hit restores (JSON-serialisable); ``docs``
    the document ids its sources cited (the reverse index); ``created`` and
    ``expires`` are epoch seconds (``expires`` None: no TTL); ``tokens`` what the
    run that made it used, saved again by every hit.
    """

    key: str
    partition: str
    tenant: str | None
    question: str
    values: Mapping[str, Any]
    docs: tuple[str, ...] = ()
    corpus: str | None = None
    created: float = 0.0
    expires: float | None = None
    tokens: int = 0

    def expired(self, now: float) -> bool:
        """Whether the entry's TTL has passed at ``now``."""
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True, slots=True)
class Observation:
    """Feedback on one semantic hit of an entry: its similarity, and whether it was right."""

    similarity: float
    correct: bool


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What a store holds: live entries, per tenant (``"-"``: no tenant), and expired ones."""

    entries: int
    expired: int
    tenants: Mapping[str, int] = field(default_factory=dict)
    docs: int = 0  # distinct documents in the reverse index


@runtime_checkable
class AnswerStore(Protocol):
    """A store of cached answers (see the module docstring).

    ``now`` is epoch seconds, passed in so the caller's clock decides expiry.
    """

    def get(self, key: str, now: float) -> CacheEntry | None:
        """The live entry under ``key``; None when absent or expired."""
        ...

    def put(self, entry: CacheEntry) -> None:
        """Store ``entry`` (replacing one with its key) and index its documents."""
        ...

    def purge(
        self,
        *,
        tenant: str | None = None,
        docs: Collection[str] | None = None,
        expired_before: float | None = None,
    ) -> list[str]:
        """Delete entries and return their keys: all of them, or those matching every filter.

        ``tenant`` selects one tenant's entries; ``docs`` those citing any of these
        document ids; ``expired_before`` those expired at that time.
        """
        ...

    def stats(self, now: float, tenant: str | None = None) -> StoreStats:
        """Counts of live and expired entries (one tenant's, or all)."""
        ...

    def observe(self, key: str, observation: Observation) -> None:
        """Record feedback on a hit of ``key`` (kept until the entry goes)."""
        ...

    def observations(self, key: str) -> list[Observation]:
        """The feedback recorded on ``key``, oldest first."""
        ...
