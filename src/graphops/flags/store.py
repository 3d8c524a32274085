"""Where flags live: a small Protocol, one module per implementation.

:class:`MemoryFlagStore` (:mod:`graphops.flags.store_memory`) is one process's,
and the tests' fake; :class:`~graphops.flags.store_sql.SqlFlagStore` keeps flags in
graphops' database (SQLite by default, Postgres by URL), shared by every process,
with every change in the audit log.

Every write names its ``actor`` and may say which ``expected`` version it changes:
a write against a flag that moved since it was read is refused
(:class:`~graphops.errors.ConflictError`), so two controllers or two operators
never overwrite each other's change unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from graphops.flags.model import Flag, FlagChange

__all__ = ["FlagStore"]


@runtime_checkable
class FlagStore(Protocol):
    """Flags by name, each write recorded with who made it."""

    def get(self, name: str) -> Flag | None:
        """The flag ``name`` as stored (its ``version`` set), or None."""
        ...

    def all(self) -> dict[str, Flag]:
        """Every flag, by name: one read, what a resolver refreshes from."""
        ...

    def put(
        self,
        flag: Flag,
        *,
        actor: str,
        action: str = "set",
        expected: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Flag:
        """Store ``flag`` and record the change; returns it with its new version.

        ``expected``: the version this write changes (0: the flag must not exist
        yet); a mismatch raises :class:`~graphops.errors.ConflictError` and stores
        nothing. ``detail`` goes to the audit log with the flag as stored (under
        ``"flag"``, which a ``detail`` key of that name cannot replace).
        """
        ...

    def history(self, name: str | None = None, limit: int = 50) -> list[FlagChange]:
        """The latest changes, newest first (of one flag, or of all)."""
        ...
