"""Flags in one process's memory: the default with no database, and the tests' fake."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from graphops.errors import ConflictError
from graphops.flags.model import Flag, FlagChange, check_flag_name

__all__ = ["MemoryFlagStore"]


class MemoryFlagStore:
    """A :class:`~graphops.flags.store.FlagStore` in a dict, its history in a list."""

    def __init__(self) -> None:
        self._flags: dict[str, Flag] = {}
        self._history: list[FlagChange] = []
        self._lock = threading.Lock()

    def get(self, name: str) -> Flag | None:
        return self._flags.get(check_flag_name(name))

    def all(self) -> dict[str, Flag]:
        with self._lock:
            return dict(self._flags)

    def put(
        self,
        flag: Flag,
        *,
        actor: str,
        action: str = "set",
        expected: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Flag:
        with self._lock:
            current = self._flags.get(flag.name)
            version = current.version if current is not None else 0
            if expected is not None and expected != version:
                raise ConflictError(
                    f"flag {flag.name!r} is at version {version}, not {expected}: "
                    "it changed since it was read"
                )
            stored = replace(flag, version=version + 1)
            self._flags[flag.name] = stored
            self._history.append(
                FlagChange(
                    time.time_ns(),
                    actor,
                    action,
                    flag.name,
                    stored.version,
                    {**dict(detail or {}), "flag": stored.as_json()},  # the flag as stored wins
                )
            )
            return stored

    def history(self, name: str | None = None, limit: int = 50) -> list[FlagChange]:
        if name is not None:
            check_flag_name(name)
        with self._lock:
            rows = [c for c in self._history if name is None or c.flag == name]
        return rows[::-1][:limit]
