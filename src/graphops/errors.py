"""The one exception tree of graphops.

Every error graphops raises on purpose is a :class:`GraphopsError`, split the way
pydantic-ai splits its errors: a :class:`UserError` means the call or the
configuration is wrong and the message says how to fix it; a :class:`RunError`
means something failed while running (a model, a source, the index) and retrying
later, or elsewhere, may succeed.

```
GraphopsError
├── UserError                 you misused graphops; the message says how to fix the call
│   ├── ConfigurationError    a setting is missing or invalid (GRAPHOPS_*, an API key)
│   └── InvalidInputError     a question, a path or a URL that cannot be used as given
└── RunError                  it failed at run time
    ├── ModelError            a chat or embedding model could not be loaded or called
    │   └── ProvidersUnavailable  every provider of a resilient chat model failed or was open
    ├── IngestError           a source could not be read, fetched or decoded
    ├── CorpusIndexError      the vector index is missing, corrupt or built by another model
    ├── StorageError          graphops' database is locked by another process, damaged or unusable
    ├── ConflictError         a write was refused: what it changes moved since it was read
    ├── BudgetExhausted       a node ran out of its run's time budget or its stage limit
    └── RefusedError          the guard refused the run (with GuardPolicy(on_refusal="raise"))
        └── SlotRefused       no concurrency slot came in time (graphops.limits.slots)
```

The CLI turns any of these into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BudgetExhausted",
    "ConfigurationError",
    "ConflictError",
    "CorpusIndexError",
    "GraphopsError",
    "IngestError",
    "InvalidInputError",
    "ModelError",
    "ProvidersUnavailable",
    "RefusedError",
    "RunError",
    "StorageError",
    "UserError",
]


class GraphopsError(Exception):
    """Base of every error graphops raises on purpose."""


class UserError(GraphopsError):
    """The caller misused graphops; the message names the fix."""


class ConfigurationError(UserError):
    """A setting is missing or invalid."""


class InvalidInputError(UserError):
    """An input (question, path, URL) cannot be used as given."""


class RunError(GraphopsError):
    """Something failed while running; the input itself may be fine."""


class ModelError(RunError):
    """A chat or embedding model could not be loaded or called."""


class ProvidersUnavailable(ModelError):
    """No provider of a resilient chat model answered: each failed, was open, or had no time.

    ``attempts`` lists what happened to each provider, in chain order, as
    ``(provider, outcome)`` pairs (``"open"``, ``"deadline"``, or the error's type name).
    """

    def __init__(self, message: str, attempts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class IngestError(RunError):
    """A source document could not be read, fetched or decoded."""


class CorpusIndexError(RunError):
    """The vector index is missing, corrupt, or was built with another embedding model."""


class StorageError(RunError):
    """graphops' database is locked by another process, damaged, or cannot be opened."""


class ConflictError(RunError):
    """A write was refused: what it changes moved since it was read (read it again)."""


class BudgetExhausted(RunError):
    """A node attempt was stopped, or not started, because its time ran out.

    ``kind`` is ``"run"`` when the run's deadline passed (nothing later in the run can
    have more time: no retry is made) and ``"stage"`` when the node's own limit
    passed with run time left. ``limit_s`` is the time the attempt was given.
    """

    def __init__(self, node: str, kind: str, limit_s: float) -> None:
        what = "the run's deadline" if kind == "run" else "its stage limit"
        super().__init__(f"node {node!r} stopped at {what} ({limit_s:.3f} s given)")
        self.node = node
        self.kind = kind
        self.limit_s = limit_s


class RefusedError(RunError):
    """The guard refused the run: a limit, a quota, a bad input or an unanswering store.

    Raised only when the policy asks for it (``GuardPolicy(on_refusal="raise")``);
    by default a refusal ends the run cleanly with the same facts in the ops
    channel. ``outcome`` is the guard's outcome: ``reason``, ``message``,
    ``retry_after_s`` (None: retrying the same run will not help) and ``limit``.
    """

    def __init__(self, outcome: Mapping[str, Any]) -> None:
        super().__init__(str(outcome.get("message") or outcome.get("reason")))
        self.outcome = dict(outcome)
        self.reason: str | None = outcome.get("reason")
        self.retry_after_s: float | None = outcome.get("retry_after_s")
