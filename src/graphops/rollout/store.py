"""Where rollouts live: ``graphops_rollouts``, one row per flag, in graphops' database.

A row holds the :class:`~graphops.rollout.model.Rollout` and ``flag_version``,
the version of the flag the controller last wrote. Every change of a rollout is
made *after* the flag write it implies (which carries the version it expects),
so the flag write is where two controllers meet: only one can move the flag
from a given version, the other gets a :class:`~graphops.errors.ConflictError`
and changes nothing. The row's own ``version`` is checked on update too.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from graphops.db.engine import engine_for
from graphops.db.failures import failing
from graphops.db.schema import rollouts as table
from graphops.errors import ConflictError
from graphops.flags.model import check_flag_name
from graphops.rollout.model import Rollout

__all__ = ["SqlRollouts"]


class SqlRollouts:
    """Rollouts in SQL (SQLite by default, Postgres by URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)

    def get(self, flag: str) -> tuple[Rollout, int] | None:
        """The flag's rollout and the flag version it last wrote, or None."""
        check_flag_name(flag)
        with self._failing(), self.engine.connect() as connection:
            row = connection.execute(select(table).where(table.c.flag == flag)).mappings().first()
        return None if row is None else _rollout(row)

    def all(self) -> list[tuple[Rollout, int]]:
        """Every rollout, by flag."""
        with self._failing(), self.engine.connect() as connection:
            rows = connection.execute(select(table).order_by(table.c.flag)).mappings().all()
        return [_rollout(row) for row in rows]

    def save(self, rollout: Rollout, flag_version: int) -> Rollout:
        """Store ``rollout`` (a new one replaces a finished one); returns it with its version.

        A rollout read at ``rollout.version`` that another writer has changed
        since is refused with :class:`ConflictError`.
        """
        values = _values(rollout, flag_version)
        with self._failing(), self.engine.begin() as connection:
            current = connection.execute(
                select(table.c.version, table.c.state).where(table.c.flag == rollout.flag)
            ).first()
            if current is None or (rollout.version == 0 and current.state != "running"):
                if current is not None:
                    connection.execute(delete(table).where(table.c.flag == rollout.flag))
                connection.execute(insert(table).values(**values, version=1))
                return replace(rollout, version=1)
            if rollout.version == 0:
                raise ConflictError(
                    f"flag {rollout.flag!r} already has a running rollout: `graphops rollout "
                    f"status {rollout.flag}` shows it, `graphops rollout abort` ends it"
                )
            changed = connection.execute(
                update(table)
                .where(table.c.flag == rollout.flag, table.c.version == rollout.version)
                .values(**values, version=rollout.version + 1)
            ).rowcount
            if changed != 1:
                raise ConflictError(
                    f"the rollout of {rollout.flag!r} changed since it was read (another "
                    "controller?): nothing was written"
                )
        return replace(rollout, version=rollout.version + 1)

    def _failing(self) -> AbstractContextManager[None]:
        return failing(self.url, "the rollouts table")


def _values(rollout: Rollout, flag_version: int) -> dict[str, Any]:
    return {
        "flag": rollout.flag,
        "control": rollout.control,
        "canary": rollout.canary,
        "steps": json.dumps(list(rollout.steps)),
        "step": rollout.step,
        "state": rollout.state,
        "min_runs": rollout.min_runs,
        "interval_s": rollout.interval_s,
        "alpha": rollout.alpha,
        "graph": rollout.graph,
        "started_ns": rollout.started_ns,
        "step_started_ns": rollout.step_started_ns,
        "flag_version": flag_version,
        "updated_ns": time.time_ns(),
    }


def _rollout(row: Any) -> tuple[Rollout, int]:
    rollout = Rollout(
        flag=row["flag"],
        control=row["control"],
        canary=row["canary"],
        steps=tuple(json.loads(row["steps"])),
        step=row["step"],
        state=row["state"],
        min_runs=row["min_runs"],
        interval_s=row["interval_s"],
        alpha=row["alpha"],
        graph=row["graph"],
        started_ns=row["started_ns"],
        step_started_ns=row["step_started_ns"],
        version=row["version"],
    )
    return rollout, int(row["flag_version"])
