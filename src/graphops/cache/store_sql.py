"""The SQL answer store: graphops' database, SQLite by default, Postgres by URL.

Three tables, made by migration 0003 like graphops' other tables (``graphops db
upgrade``; the embedded SQLite database gets them on first use through
:func:`graphops.db.prepare_url`, which :func:`graphops.cache.factory.answer_store`
calls):

* ``graphops_cache_entries``: one row per entry under its key, its ``values``
  and ``docs`` as JSON text, so :meth:`SqlAnswerStore.get` is one primary-key read;
* ``graphops_cache_docs``: the reverse index, document id → key;
* ``graphops_cache_feedback``: the observations, oldest first, deleted with their entry.

They are declared in :mod:`graphops.db.schema`, on its :data:`~graphops.db.schema.metadata`
with graphops' other tables.

The semantics are :class:`~graphops.cache.store_memory.MemoryAnswerStore`'s:
replacing an entry drops its feedback, and with ``max_entries`` (default: no
bound) the oldest stored entry goes first. ``values`` go through JSON, so a
tuple comes back as a list. Every database failure is a graphops error, as
:func:`graphops.db.failures.storage_error` names them (locked, damaged,
unreachable), else a :class:`~graphops.errors.RunError` with the driver's first
line: never SQLAlchemy's own text, which carries every SQL parameter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    Text,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from graphops.cache.store import CacheEntry, Observation, StoreStats
from graphops.db.engine import engine_for, safe_url, writing
from graphops.db.failures import said, storage_error
from graphops.db.schema import cache_docs as _docs
from graphops.db.schema import cache_entries as _entries
from graphops.db.schema import cache_feedback as _feedback
from graphops.errors import ConfigurationError, InvalidInputError, RunError

__all__ = ["SqlAnswerStore"]

_BATCH = 500  # keys or document ids per statement, well under any bound-parameter limit
_PLAIN = ("key", "partition", "tenant", "question", "corpus", "created", "expires", "tokens")
_GET = select(
    *(_entries.c[name] for name in ("partition", "tenant", "question", "values_json")),
    *(_entries.c[name] for name in ("docs_json", "corpus", "created", "expires", "tokens")),
).where(_entries.c.key == bindparam("key"))


class SqlAnswerStore:
    """An :class:`~graphops.cache.store.AnswerStore` in graphops' database (see the module)."""

    def __init__(self, url: str, *, max_entries: int | None = None) -> None:
        if max_entries is not None and (
            isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
        ):
            raise ConfigurationError(
                f"SqlAnswerStore.max_entries is {max_entries!r}: give a whole number, at "
                "least 1, or None for no bound"
            )
        self.url = url
        self.max_entries = max_entries
        self.engine: Engine = engine_for(url)
        dialect = self.engine.dialect
        self._get_sql = str(_GET.compile(dialect=dialect))
        self._autocommit = dialect.name == "postgresql"
        self._positional = dialect.positional
        self._errors = (SQLAlchemyError, dialect.loaded_dbapi.Error)
        self._last_ns = 0
        self._clock = threading.Lock()

    def get(self, key: str, now: float) -> CacheEntry | None:
        """One ``SELECT`` by primary key, on the driver's connection from the engine's pool.

        SQLAlchemy's execution costs more than the query, and on Postgres its
        transaction adds ``BEGIN`` and ``ROLLBACK``: the read runs in autocommit.
        """
        with self._failing():
            pooled = self.engine.raw_connection()  # checked out, and pinged, by the pool
            try:
                row = self._select(pooled.driver_connection, key)
            finally:
                pooled.close()
        if row is None or (row[-2] is not None and now >= row[-2]):
            return None
        partition, tenant, question, values, docs, corpus, created, expires, tokens = row
        return CacheEntry(
            key, partition, tenant, question, json.loads(values), tuple(json.loads(docs)),
            corpus, created, expires, tokens,
        )  # fmt: skip

    def _select(self, driver: Any, key: str) -> Any:
        params: Any = (key,) if self._positional else {"key": key}
        if not self._autocommit:
            return driver.execute(self._get_sql, params).fetchone()
        driver.autocommit = True
        try:
            return driver.execute(self._get_sql, params).fetchone()
        finally:
            driver.autocommit = False

    def put(self, entry: CacheEntry) -> None:
        try:
            values = json.dumps(dict(entry.values), ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"the cache entry {entry.key!r} has values that are not JSON ({exc}): cache "
                "only JSON-serialisable state"
            ) from None
        docs = list(dict.fromkeys(entry.docs))  # each indexed once
        row = {name: getattr(entry, name) for name in _PLAIN}
        row.update(values_json=values, docs_json=json.dumps(entry.docs, ensure_ascii=False))
        row["stored_ns"] = self._stamp()
        with self._failing(), self._writing() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            upsert = dialect.insert(_entries).values(row)
            # the upsert first: it locks the key, so concurrent puts of one key take turns
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=[_entries.c.key],
                    set_={name: upsert.excluded[name] for name in row if name != "key"},
                )
            )
            connection.execute(delete(_docs).where(_docs.c.key == entry.key))
            connection.execute(delete(_feedback).where(_feedback.c.key == entry.key))
            if docs:
                connection.execute(insert(_docs), [{"doc": d, "key": entry.key} for d in docs])
            if self.max_entries is not None:
                self._evict(connection, self.max_entries)

    def purge(
        self,
        *,
        tenant: str | None = None,
        docs: Collection[str] | None = None,
        expired_before: float | None = None,
    ) -> list[str]:
        query = select(_entries.c.key)
        if tenant is not None:
            query = query.where(_entries.c.tenant == tenant)
        if expired_before is not None:
            query = query.where(_entries.c.expires <= expired_before)
        query = query.with_for_update(of=_entries)  # Postgres: a put of these keys waits
        with self._failing(), self._writing() as connection:
            if docs is None:
                keys = list(connection.execute(query).scalars())
            else:
                cited = query.join(_docs, _docs.c.key == _entries.c.key)
                found: dict[str, None] = {}
                for part in _batches(list(dict.fromkeys(docs))):
                    rows = connection.execute(cited.where(_docs.c.doc.in_(part))).scalars()
                    found.update(dict.fromkeys(rows))
                keys = list(found)
            self._drop(connection, keys)
        return keys

    def stats(self, now: float, tenant: str | None = None) -> StoreStats:
        live = or_(_entries.c.expires.is_(None), _entries.c.expires > now)
        who = func.coalesce(_entries.c.tenant, "-")
        counts = select(who, func.sum(case((live, 1), else_=0)), func.count()).group_by(who)
        cited = (
            select(func.count(func.distinct(_docs.c.doc)))
            .select_from(_docs.join(_entries, _docs.c.key == _entries.c.key))
            .where(live)
        )
        if tenant is not None:
            counts = counts.where(_entries.c.tenant == tenant)
            cited = cited.where(_entries.c.tenant == tenant)
        with self._failing(), self.engine.connect() as connection:
            rows = connection.execute(counts).all()
            documents = int(connection.execute(cited).scalar_one())
        tenants = {name: int(n) for name, n, _ in rows if n}
        entries = sum(tenants.values())
        return StoreStats(
            entries, sum(int(total) for *_, total in rows) - entries, tenants, documents
        )

    def observe(self, key: str, observation: Observation) -> None:
        values = select(
            literal(key, Text),
            literal(float(observation.similarity), Float),
            literal(bool(observation.correct), Boolean),
        ).where(exists().where(_entries.c.key == key))  # feedback only on an entry there is
        with self._failing(), self.engine.begin() as connection:
            connection.execute(
                insert(_feedback).from_select(["key", "similarity", "correct"], values)
            )

    def observations(self, key: str) -> list[Observation]:
        query = (
            select(_feedback.c.similarity, _feedback.c.correct)
            .where(_feedback.c.key == key)
            .order_by(_feedback.c.id)
        )
        with self._failing(), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [Observation(float(similarity), bool(correct)) for similarity, correct in rows]

    # ---------------------------------------------------------------- helpers
    def _stamp(self) -> int:
        """Nanoseconds now, strictly increasing within this store (the eviction order)."""
        with self._clock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    @staticmethod
    def _evict(connection: Connection, bound: int) -> None:
        over = int(connection.execute(select(func.count()).select_from(_entries)).scalar_one())
        if over > bound:
            oldest = select(_entries.c.key).order_by(_entries.c.stored_ns, _entries.c.key)
            keys = connection.execute(oldest.limit(over - bound)).scalars()
            SqlAnswerStore._drop(connection, list(keys))

    @staticmethod
    def _drop(connection: Connection, keys: Sequence[str]) -> None:
        for part in _batches(keys):
            for table in (_docs, _feedback, _entries):
                connection.execute(delete(table).where(table.c.key.in_(part)))

    def _writing(self) -> AbstractContextManager[Connection]:
        """A write transaction whose reads are part of it (:func:`graphops.db.engine.writing`)."""
        return writing(self.engine)

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """Turn a database failure into a graphops error (see the module docstring)."""
        try:
            yield
        except self._errors as exc:
            raise storage_error(exc, self.url) or RunError(
                f"the answer cache in the database at {safe_url(self.url)} failed: {said(exc)}"
            ) from None


def _batches(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]
