"""The SQL flag store: graphops' database, SQLite by default, Postgres by URL.

Three tables, made by migration 0004 like graphops' other tables (``graphops db
upgrade``; the embedded SQLite database gets them on first use through
:func:`graphops.db.prepare_url`, which whoever makes the store calls first, as
for the answer cache and the prompt registry):

* ``graphops_flags``: one row per flag, its ``version`` bumped by every write;
* ``graphops_flag_variants``: its variants with their ``position``, since the
  order of the variants lays out the weights' shares (see
  :class:`~graphops.flags.model.Flag`), each value as JSON text;
* ``graphops_flag_rules``: its rules with their ``position``, the order they are tried.

Every change also appends a row of kind ``flag`` to the audit log the prompt
registry writes (``graphops_prompt_audit``), in the same transaction, so the
history is complete by construction: a change is either stored and recorded,
or neither.

The semantics are :class:`~graphops.flags.store_memory.MemoryFlagStore`'s, with
one write at a time per flag: :meth:`SqlFlagStore.put` reads the version under
the write lock (``SELECT ... FOR UPDATE`` on Postgres, ``BEGIN IMMEDIATE`` on
SQLite), so an ``expected`` version that is not the stored one is a
:class:`~graphops.errors.ConflictError` with nothing written, and of two writers
creating the same flag at once (whose ``SELECT`` can lock no row) the second
one's insert fails on the primary key: a ConflictError too when it expected the
flag not to exist, else it writes the next version. Reads (:meth:`~SqlFlagStore.all`
is three queries, whatever the number of flags) see one snapshot, never half a write.

What SQL cannot store as given is refused before anything is written
(:class:`~graphops.errors.InvalidInputError`): an action that is not a short
name, an actor or description with a NUL character (Postgres text cannot hold
one), a ``detail`` that is not JSON. Names reach SQL only as bound parameters,
after the model's checks. Every database failure is a
:class:`~graphops.errors.StorageError` (locked, damaged, unreachable, or the
driver's first line), never SQLAlchemy's own text, which carries every parameter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from graphops.db.engine import engine_for, safe_url, writing
from graphops.db.failures import failing
from graphops.db.schema import flag_rules as _rules
from graphops.db.schema import flag_variants as _variants
from graphops.db.schema import flags as _flags
from graphops.db.schema import prompt_audit as _audit
from graphops.errors import ConflictError, InvalidInputError, StorageError
from graphops.flags.model import Flag, FlagChange, Rule, check_flag_name

__all__ = ["SqlFlagStore"]

KIND = "flag"
"""The ``kind`` of the flag store's rows in the shared audit log (the registry's are 'prompt')."""
_ACTION = re.compile(r"^[a-z][a-z0-9_.\-]{0,15}$")  # fits graphops_prompt_audit.action
_ATTEMPTS = 3  # a put that lost the race to create its flag looks again (see put)


class _Raced(Exception):
    """Another writer inserted the flag between this put's read and its insert."""


class SqlFlagStore:
    """A :class:`~graphops.flags.store.FlagStore` in graphops' database (see the module)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)
        self._errors = (self.engine.dialect.loaded_dbapi.Error,)  # the driver's own, raw

    # ---------------------------------------------------------------- reads
    def get(self, name: str) -> Flag | None:
        check_flag_name(name)
        with self._failing(), self._reading() as connection:
            return self._read(connection, name).get(name)

    def all(self) -> dict[str, Flag]:
        """Every flag by name (in name order), in three queries: what a resolver refreshes from."""
        with self._failing(), self._reading() as connection:
            return self._read(connection, None)

    def history(self, name: str | None = None, limit: int = 50) -> list[FlagChange]:
        if name is not None:
            check_flag_name(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInputError(f"a history limit is a count of changes, not {limit!r}")
        query = (
            select(_audit.c.at_ns, _audit.c.actor, _audit.c.action, _audit.c.name)
            .add_columns(_audit.c.version, _audit.c.detail)
            .where(_audit.c.kind == KIND)
            .order_by(_audit.c.id.desc())
            .limit(limit)
        )
        if name is not None:
            query = query.where(_audit.c.name == name)
        with self._failing(), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            FlagChange(int(at), actor, action, flag, int(version), json.loads(detail))
            for at, actor, action, flag, version, detail in rows
        ]

    # ---------------------------------------------------------------- writes
    def put(
        self,
        flag: Flag,
        *,
        actor: str,
        action: str = "set",
        expected: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Flag:
        """Store ``flag`` as its next version and record the change, in one transaction.

        Everything is checked before the transaction; a put that lost the race
        to create a new flag (the other writer's row appeared after its read) is
        a ConflictError when it gave ``expected``, else it is made again on top
        of the other writer's version, as the memory store would have ordered them.
        """
        if not isinstance(flag, Flag):
            raise InvalidInputError(f"a flag store stores Flag objects, not {type(flag).__name__}")
        check_flag_name(flag.name)
        _text("actor", actor)
        _text("description", flag.description)
        if not isinstance(action, str) or not _ACTION.match(action):
            raise InvalidInputError(
                f"{action!r} is not a flag action (a lower-case letter, then up to 15 of "
                "a-z 0-9 _ - .: set, kill, revive, rollout-...)"
            )
        if expected is not None and (
            isinstance(expected, bool) or not isinstance(expected, int) or expected < 0
        ):
            raise InvalidInputError(f"expected is the version a write changes, not {expected!r}")
        record = _json("detail", {**dict(detail or {}), "flag": flag.as_json()})
        with self._failing():
            for _ in range(_ATTEMPTS):
                try:
                    return self._put(flag, actor, action, expected, record)
                except _Raced:
                    if expected is not None:
                        raise ConflictError(
                            f"flag {flag.name!r} was created by another writer at the same "
                            f"time, not at version {expected}: read it again"
                        ) from None
        raise ConflictError(  # pragma: no cover - a flag once stored is never deleted
            f"flag {flag.name!r} kept being created by other writers: try again"
        )

    def _put(self, flag: Flag, actor: str, action: str, expected: int | None, record: str) -> Flag:
        name = flag.name
        with self._writing() as connection:
            found = connection.execute(
                select(_flags.c.version).where(_flags.c.name == name).with_for_update()
            ).scalar_one_or_none()
            version = int(found) if found is not None else 0
            if expected is not None and expected != version:
                raise ConflictError(
                    f"flag {name!r} is at version {version}, not {expected}: "
                    "it changed since it was read"
                )
            stored = replace(flag, version=version + 1)
            now = time.time_ns()
            row = {
                "default_variant": flag.default,
                "sticky_by": json.dumps(list(flag.sticky_by)),
                "killed": flag.killed,
                "description": flag.description,
                "version": stored.version,
                "updated_ns": now,
                "updated_by": actor,
            }
            if found is None:
                try:
                    connection.execute(insert(_flags).values(name=name, **row))
                except IntegrityError:
                    raise _Raced from None  # the transaction is rolled back on the way out
            else:
                moved = connection.execute(
                    update(_flags)
                    .where(_flags.c.name == name, _flags.c.version == version)
                    .values(**row)
                )
                if moved.rowcount != 1:  # pragma: no cover - the row is locked since the read
                    raise ConflictError(f"flag {name!r} changed during this write: read it again")
            for table in (_variants, _rules):
                connection.execute(delete(table).where(table.c.flag == name))
            connection.execute(insert(_variants), _variant_rows(flag))
            if flag.rules:
                connection.execute(insert(_rules), _rule_rows(flag))
            connection.execute(
                insert(_audit).values(
                    kind=KIND,
                    at_ns=now,
                    actor=actor,
                    action=action,
                    name=name,
                    label=None,
                    version=stored.version,
                    previous=found,
                    detail=record,
                )
            )
        return stored

    # ---------------------------------------------------------------- helpers
    def _read(self, connection: Connection, name: str | None) -> dict[str, Flag]:
        """The flags (all, or the one named) from three queries in ``connection``'s snapshot."""
        flags = select(_flags).order_by(_flags.c.name)
        variants = select(_variants).order_by(_variants.c.flag, _variants.c.position)
        rules = select(_rules).order_by(_rules.c.flag, _rules.c.position)
        if name is not None:
            flags = flags.where(_flags.c.name == name)
            variants = variants.where(_variants.c.flag == name)
            rules = rules.where(_rules.c.flag == name)
        heads = connection.execute(flags).all()
        by_flag: dict[str, tuple[list[Row[Any]], list[Row[Any]]]] = {
            row.name: ([], []) for row in heads
        }
        for row in connection.execute(variants):
            by_flag.get(row.flag, ([], []))[0].append(row)
        for row in connection.execute(rules):
            by_flag.get(row.flag, ([], []))[1].append(row)
        return {row.name: self._flag(row, *by_flag[row.name]) for row in heads}

    def _flag(
        self, head: Row[Any], variants: Sequence[Row[Any]], rules: Sequence[Row[Any]]
    ) -> Flag:
        """A flag from its rows; rows no graphops wrote (edited by hand) are a StorageError."""
        try:
            return Flag(
                name=head.name,
                variants={v.name: json.loads(v.value_json) for v in variants},
                weights={v.name: v.weight for v in variants if v.weight is not None},
                default=head.default_variant,
                rules=tuple(
                    Rule(r.attribute, tuple(json.loads(r.values_json)), r.variant, r.op, r.percent)
                    for r in rules
                ),
                sticky_by=tuple(json.loads(head.sticky_by)),
                killed=bool(head.killed),
                version=int(head.version),
                description=head.description,
            )
        except (InvalidInputError, ValueError, TypeError) as exc:
            raise StorageError(
                f"the flag {head.name!r} in the database at {safe_url(self.url)} cannot be "
                f"read ({exc}): set it again with graphops"
            ) from None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read transaction on one snapshot, so three queries see one version of a flag.

        Postgres reads at ``REPEATABLE READ`` (a read-only transaction there never
        fails to serialise); SQLite's driver opens no transaction for a ``SELECT``,
        so a deferred ``BEGIN`` holds the first query's snapshot for the others.
        """
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                if connection.dialect.name == "sqlite":
                    connection.exec_driver_sql("BEGIN")
                yield connection

    def _writing(self) -> AbstractContextManager[Connection]:
        """A write transaction whose reads are part of it (:func:`graphops.db.engine.writing`)."""
        return writing(self.engine)

    def _failing(self) -> AbstractContextManager[None]:
        """A database failure as graphops names it (:func:`graphops.db.failures.failing`).

        A locked, damaged or unusable database is a StorageError and a Postgres that
        does not answer a RunError (``cannot reach the database at …``), as the
        answer store and the prompt registry raise them; anything else is a
        StorageError naming the flag store. Each is a RunError, which is what the
        resolver's stale-if-error catches.
        """
        return failing(self.url, "the flag store", self._errors)


def _variant_rows(flag: Flag) -> list[dict[str, Any]]:
    return [
        {
            "flag": flag.name,
            "name": variant,
            "position": position,
            "value_json": json.dumps(value, sort_keys=True, allow_nan=False),
            "weight": flag.weights.get(variant),  # None: not given, as the flag has it
        }
        for position, (variant, value) in enumerate(flag.variants.items())
    ]


def _rule_rows(flag: Flag) -> list[dict[str, Any]]:
    return [
        {
            "flag": flag.name,
            "position": position,
            "attribute": rule.attribute,
            "op": rule.op,
            "values_json": json.dumps(list(rule.values)),
            "variant": rule.variant,
            "percent": rule.percent,
        }
        for position, rule in enumerate(flag.rules)
    ]


def _text(what: str, value: object) -> None:
    """Refuse text SQL cannot keep as given: no NUL in Postgres text, no lone surrogate in UTF-8."""
    if not isinstance(value, str):
        raise InvalidInputError(f"a flag's {what} is text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"a flag's {what} is not valid Unicode text: {value!r}") from None
    if "\x00" in value:
        raise InvalidInputError(f"a flag's {what} cannot contain a NUL character: {value!r}")


def _json(what: str, value: Any) -> str:
    """``value`` as JSON text (escaped: NULs and lone surrogates come back as they went in)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"a flag change's {what} is not JSON ({exc})") from None
