"""The SQL prompt registry: immutable numbered versions, movable labels, an audit log.

Prompt files (``prompts/*.md``) are where prompts are written; the registry is
where they are kept once used or published, so every run can say exactly which
text it ran with and any stored run can be re-run with another version.

* A version is immutable: publishing text that is already a version of that
  prompt returns that version, and nothing ever updates a version's row.
* A label (``production``, ``staging``, …) points at one version; moving it is the
  deployment, and :meth:`PromptRegistry.rollback` moves it back to where it
  pointed before, replaying the audit log as a stack.
* ``latest`` is not stored: it always means the highest version.
* Every publish, label move and rollback appends a row to the audit log, in the
  same transaction as the change it records.

Same tables, same code on SQLite and Postgres (``GRAPHOPS_DATABASE_URL``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from graphops.db.engine import BUSY_TIMEOUT_S, engine_for, writing
from graphops.db.failures import is_locked, locked
from graphops.db.schema import prompt_audit, prompt_labels, prompt_versions
from graphops.errors import InvalidInputError, RunError
from graphops.prompts.files import PromptFile, PromptLibrary, parse_prompt
from graphops.prompts.refs import LATEST, check_label, check_name, parse_ref

__all__ = ["AuditEntry", "PromptRegistry", "PromptVersion"]

_RETRY_FOR_S = BUSY_TIMEOUT_S  # writers racing for the same row: the losers retry this long
_KIND = "prompt"  # the audit log is shared with the flag store (kind 'flag'): only ours here
_AUDIT_COLUMNS = [column for column in prompt_audit.c if column.name != "kind"]  # AuditEntry's
_T = TypeVar("_T")


@dataclass(frozen=True)
class PromptVersion:
    """One stored version of a prompt."""

    name: str
    version: int
    text: str
    content_hash: str
    created_ns: int
    author: str
    message: str
    labels: tuple[str, ...] = ()

    def prompt(self) -> PromptFile:
        """The parsed prompt, carrying this version's number."""
        return parse_prompt(self.name, self.text, version=self.version)


@dataclass(frozen=True)
class AuditEntry:
    """One change to the registry."""

    id: int
    at_ns: int
    actor: str
    action: str  # publish | label | rollback
    name: str
    label: str | None
    version: int | None
    previous: int | None
    detail: str


class PromptRegistry:
    """Prompt versions, labels and audit log in graphops' database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)

    # ---------------------------------------------------------------- writes
    def publish(self, name: str, text: str, *, author: str, message: str = "") -> PromptVersion:
        """Store ``text`` as the next version of ``name`` (or return the version it already is).

        The text is parsed first, so a broken template never becomes a version.
        """
        return self._publish(name, text, author=author, message=message)[0]

    def _publish(
        self, name: str, text: str, *, author: str, message: str
    ) -> tuple[PromptVersion, bool]:
        """:meth:`publish`, also saying whether the version is new."""
        check_name(name)
        content_hash = parse_prompt(name, text).content_hash

        def attempt() -> tuple[PromptVersion, bool]:
            existing = self._by_hash(name, content_hash)
            if existing is not None:
                return existing, False
            with self._writing() as connection:
                number = 1 + int(
                    connection.execute(
                        select(func.coalesce(func.max(prompt_versions.c.version), 0)).where(
                            prompt_versions.c.name == name
                        )
                    ).scalar_one()
                )
                now = time.time_ns()
                connection.execute(
                    insert(prompt_versions).values(
                        name=name,
                        version=number,
                        text=text,
                        content_hash=content_hash,
                        created_ns=now,
                        author=author,
                        message=message,
                    )
                )
                self._audit(connection, author, "publish", name, None, number, None, message)
            return PromptVersion(name, number, text, content_hash, now, author, message), True

        return self._retrying(attempt, f"publish prompt {name!r}")

    def sync(
        self, library: PromptLibrary, *, author: str, label: str | None = None
    ) -> list[tuple[PromptVersion, bool]]:
        """Publish every file of ``library``; ``(version, new?)`` per prompt.

        With ``label``, that label is moved to each published version. Every file is
        parsed before anything is written, so one broken file publishes nothing.
        """
        files = {name: library.get(name) for name in library.names()}
        if label is not None:
            check_label(label)
        out = []
        for name, prompt in files.items():
            version, new = self._publish(
                name, prompt.text, author=author, message=f"synced from {library.directory}"
            )
            if label is not None and self.label_of(name, label) != version.version:
                self.set_label(name, label, version.version, actor=author)
            out.append((version, new))
        return out

    def set_label(self, name: str, label: str, version: int, *, actor: str) -> None:
        """Point ``label`` of ``name`` at ``version``."""
        self.get(name, version)  # exists, or a clear error
        self._move(name, label, actor=actor, target=version)

    def rollback(self, name: str, label: str = "production", *, actor: str) -> int:
        """Move ``label`` back to the version it pointed at before; returns that version."""
        return self._move(name, label, actor=actor, target=None)

    def _move(self, name: str, label: str, *, actor: str, target: int | None) -> int:
        """Move ``label`` to ``target``, or roll it back when ``target`` is None.

        The label row is locked (``FOR UPDATE`` on Postgres) and the history is read
        in the same transaction, so two concurrent changes cannot both roll back
        from the same version; SQLite refuses the second writer, which retries.
        """
        check_name(name)
        if check_label(label) == LATEST:
            raise InvalidInputError("'latest' always means the highest version: it cannot be moved")
        return self._retrying(
            lambda: self._move_once(name, label, actor=actor, target=target),
            f"move label {label!r} of {name!r}",
        )

    def _retrying(self, attempt: Callable[[], _T], what: str) -> _T:
        """Run ``attempt`` again while concurrent writers get in its way, for a bounded time.

        A unique key taken first by another writer (the next version number, the
        same text, a label's first row) or SQLite's busy writer means: look again.
        SQLite's lock error comes only after a whole busy timeout spent waiting, so
        a lock still held when the time is up is another process's, and is said so.
        """
        deadline = time.monotonic() + _RETRY_FOR_S
        while True:
            try:
                return attempt()
            except IntegrityError:
                was_locked = False
            except OperationalError as exc:
                if not is_locked(exc):  # anything but SQLite's busy writer is real
                    raise
                was_locked = True
            if time.monotonic() >= deadline:
                if was_locked:
                    raise locked(self.url)
                raise RunError(
                    f"could not {what}: other writers kept changing it for "
                    f"{_RETRY_FOR_S:.0f} s; try again"
                )
            time.sleep(random.uniform(0.001, 0.02))  # de-synchronise the losers

    def _move_once(self, name: str, label: str, *, actor: str, target: int | None) -> int:
        now = time.time_ns()
        with self._writing() as connection:
            current = connection.execute(
                select(prompt_labels.c.version)
                .where(prompt_labels.c.name == name, prompt_labels.c.label == label)
                .with_for_update()
            ).scalar_one_or_none()
            if target is None:
                stack = self._label_stack(connection, name, label)
                if len(stack) < 2:
                    where = f"v{stack[0]}" if stack else "nothing"
                    raise InvalidInputError(
                        f"prompt {name!r} label {label!r} points at {where} and has no earlier "
                        "version to roll back to"
                    )
                version, action = stack[-2], "rollback"
            else:
                version, action = target, "label"
            if current == version:
                return version  # already there: not a move, so nothing to audit or roll back
            if current is None:
                connection.execute(
                    insert(prompt_labels).values(
                        name=name, label=label, version=version, updated_ns=now
                    )
                )
            else:
                connection.execute(
                    update(prompt_labels)
                    .where(prompt_labels.c.name == name, prompt_labels.c.label == label)
                    .values(version=version, updated_ns=now)
                )
            self._audit(connection, actor, action, name, label, version, current, "")
        return version

    def _writing(self) -> AbstractContextManager[Connection]:
        """A write transaction whose reads are part of it (:func:`graphops.db.engine.writing`)."""
        return writing(self.engine)

    @staticmethod
    def _audit(
        connection: Connection,
        actor: str,
        action: str,
        name: str,
        label: str | None,
        version: int | None,
        previous: int | None,
        detail: str,
    ) -> None:
        connection.execute(
            insert(prompt_audit).values(
                kind=_KIND,
                at_ns=time.time_ns(),
                actor=actor,
                action=action,
                name=name,
                label=label,
                version=version,
                previous=previous,
                detail=detail,
            )
        )

    # ---------------------------------------------------------------- reads
    def get(self, name: str, ref: int | str | None = None) -> PromptVersion:
        """Version ``ref`` (a number or a label; ``latest`` when None) of ``name``."""
        check_name(name)
        ref = parse_ref(ref)
        if ref is None or ref == LATEST:
            number = self._latest(name)
        elif isinstance(ref, int):
            number = ref
        else:
            found = self.label_of(name, ref)
            if found is None:
                raise InvalidInputError(
                    f"prompt {name!r} has no label {ref!r} (labels: "
                    f"{', '.join(self.labels(name)) or 'none'})"
                )
            number = found
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(prompt_versions).where(
                        prompt_versions.c.name == name, prompt_versions.c.version == number
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise InvalidInputError(
                f"prompt {name!r} has no version {number} (latest: {self._latest(name)})"
            )
        return self._version(row)

    def label_of(self, name: str, label: str) -> int | None:
        """The version ``label`` points at (None: the label is not set)."""
        if label == LATEST:
            return self._latest(name, missing_ok=True) or None
        with self.engine.connect() as connection:
            found = connection.execute(
                select(prompt_labels.c.version).where(
                    prompt_labels.c.name == name, prompt_labels.c.label == label
                )
            ).scalar_one_or_none()
        return int(found) if found is not None else None

    def labels(self, name: str) -> dict[str, int]:
        """Every stored label of ``name`` and the version it points at."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(prompt_labels.c.label, prompt_labels.c.version)
                .where(prompt_labels.c.name == name)
                .order_by(prompt_labels.c.label)
            ).all()
        return {row.label: int(row.version) for row in rows}

    def names(self) -> list[str]:
        """Every prompt with at least one version."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(prompt_versions.c.name).distinct().order_by(prompt_versions.c.name)
            )
            return [row.name for row in rows]

    def versions(self, name: str) -> list[PromptVersion]:
        """Every version of ``name``, oldest first, each with the labels on it."""
        labels = self.labels(check_name(name))
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(prompt_versions)
                    .where(prompt_versions.c.name == name)
                    .order_by(prompt_versions.c.version)
                )
                .mappings()
                .all()
            )
        on: dict[int, list[str]] = {}
        for label, number in labels.items():
            on.setdefault(number, []).append(label)
        return [self._version(row, tuple(on.get(row["version"], ()))) for row in rows]

    def audit(self, name: str | None = None, limit: int = 50) -> list[AuditEntry]:
        """The newest changes first, of one prompt or of all."""
        query = (
            select(*_AUDIT_COLUMNS)
            .where(prompt_audit.c.kind == _KIND)
            .order_by(prompt_audit.c.id.desc())
            .limit(limit)
        )
        if name is not None:
            query = query.where(prompt_audit.c.name == check_name(name))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [AuditEntry(**dict(row)) for row in rows]

    @staticmethod
    def _label_stack(connection: Connection, name: str, label: str) -> list[int]:
        """The label's history as a stack: moves push, rollbacks pop."""
        query = (
            select(prompt_audit.c.action, prompt_audit.c.version)
            .where(
                prompt_audit.c.kind == _KIND,
                prompt_audit.c.name == name,
                prompt_audit.c.label == label,
            )
            .order_by(prompt_audit.c.id)
        )
        stack: list[int] = []
        for row in connection.execute(query):
            if row.action == "rollback":
                if stack:
                    stack.pop()
            elif row.version is not None:
                stack.append(int(row.version))
        return stack

    def _latest(self, name: str, *, missing_ok: bool = False) -> int:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(func.max(prompt_versions.c.version)).where(prompt_versions.c.name == name)
            ).scalar_one()
        if found is None:
            if missing_ok:
                return 0
            known = ", ".join(self.names()) or "none"
            raise InvalidInputError(
                f"no prompt {name!r} in the registry (registered: {known}); "
                "publish it with 'graphops prompts sync'"
            )
        return int(found)

    def _by_hash(self, name: str, content_hash: str) -> PromptVersion | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(prompt_versions).where(
                        prompt_versions.c.name == name,
                        prompt_versions.c.content_hash == content_hash,
                    )
                )
                .mappings()
                .first()
            )
        return self._version(row) if row is not None else None

    @staticmethod
    def _version(row: Any, labels: tuple[str, ...] = ()) -> PromptVersion:
        return PromptVersion(
            name=row["name"],
            version=int(row["version"]),
            text=row["text"],
            content_hash=row["content_hash"],
            created_ns=int(row["created_ns"]),
            author=row["author"],
            message=row["message"],
            labels=labels,
        )
