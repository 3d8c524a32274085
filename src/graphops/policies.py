"""The ops configuration: which steps are on and how each node is treated.

Policies are small immutable value objects, in the manner of tenacity's strategies
and httpx's ``Timeout``; the code that applies them lives in :mod:`graphops.steps`
and :mod:`graphops.builder`. A step whose policy is ``None`` is off and inserts
nothing: no node, no wrapper, no cost. The cache tiers are not built yet
(:class:`CachePolicy` says what it does today); failover lives in the model layer
(:mod:`graphops.models.resilient`), not in the graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langgraph.types import RetryPolicy

from graphops.errors import ConfigurationError
from graphops.limits.bulkhead import BulkheadGate
from graphops.limits.limiter import Limiter
from graphops.limits.memory import MemoryLimitStore
from graphops.limits.policy import Bulkhead, RequestLimit, TokenQuota
from graphops.limits.slot_store import SlotStore
from graphops.limits.slots import Slots
from graphops.limits.slots_memory import MemorySlotStore
from graphops.limits.store import LimitStore
from graphops.resilience.budget import BudgetPolicy
from graphops.resilience.degrade import DegradeLevel, DegradePolicy, check_levels
from graphops.validation import input_problem

if TYPE_CHECKING:
    from graphops.observe.telemetry import Telemetry
    from graphops.runtime import RunScope

__all__ = [
    "BudgetPolicy",
    "CacheAnswer",
    "CachePolicy",
    "DegradePolicy",
    "GuardPolicy",
    "NodeOps",
    "Ops",
]


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard checks before the run's first node.

    **Input.** The question (``question_key``, else the text of the last user
    message under ``messages_key``) must be text, not empty, at most
    ``max_input_bytes`` bytes in UTF-8 and free of control characters; else the
    run is refused with reason ``invalid_input``. A state with neither key is not
    checked.

    **Limits.** ``requests`` (:class:`~graphops.limits.RequestLimit`) count runs
    per user, tenant, IP or API key; ``quotas`` (:class:`~graphops.limits.TokenQuota`)
    reserve ``token_estimate`` tokens plus the question's bytes (an upper bound
    of its tokens) per run and settle with the tokens really used as the run
    closes. All of a run's limits are decided in one step of ``store`` (memory
    by default, this policy's own; a
    :class:`~graphops.limits.redis.RedisLimitStore` shares them between
    processes). ``clock`` gives epoch seconds (inject one in tests).

    **Bulkheads.** ``bulkhead`` (:class:`~graphops.limits.Bulkhead`) caps the
    runs in flight per tenant (or user): a run holds a leased slot of
    ``slot_store`` (memory by default; a
    :class:`~graphops.limits.slots_redis.RedisSlotStore` shares them) from its
    admission to its close, and waits in its tenant's fair queue when they are
    all taken.

    **Refusals** end the run cleanly (``on_refusal="end"``) with
    ``{outcome: refused, reason, message, retry_after_s, limit}`` in the ops
    channel, or raise :class:`~graphops.errors.RefusedError` (``"raise"``).
    """

    max_input_bytes: int = 8192
    question_key: str = "question"
    messages_key: str | None = "messages"
    requests: tuple[RequestLimit, ...] = ()
    quotas: tuple[TokenQuota, ...] = ()
    token_estimate: int = 4096
    on_refusal: Literal["end", "raise"] = "end"
    store: LimitStore | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False)
    key_prefix: str = "graphops:"
    bulkhead: Bulkhead | None = None
    slot_store: SlotStore | None = field(default=None, compare=False)
    _limiter: Limiter | None = field(default=None, init=False, repr=False, compare=False)
    _gate: BulkheadGate | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _whole("max_input_bytes", self.max_input_bytes, 1)
        _whole("token_estimate", self.token_estimate, 0)
        if not isinstance(self.question_key, str) or not self.question_key:
            raise ConfigurationError("GuardPolicy.question_key must name a state key")
        if self.messages_key is not None and not (
            isinstance(self.messages_key, str) and self.messages_key
        ):
            raise ConfigurationError("GuardPolicy.messages_key must name a state key, or be None")
        if self.on_refusal not in ("end", "raise"):
            raise ConfigurationError(
                f"GuardPolicy.on_refusal is {self.on_refusal!r}: use 'end' or 'raise'"
            )
        for name, items, kind in (
            ("requests", self.requests, RequestLimit),
            ("quotas", self.quotas, TokenQuota),
        ):
            if not isinstance(items, tuple | list) or not all(isinstance(i, kind) for i in items):
                raise ConfigurationError(
                    f"GuardPolicy.{name} takes a tuple of {kind.__name__}, not {items!r}"
                )
            object.__setattr__(self, name, tuple(items))
        if self.store is not None and not isinstance(self.store, LimitStore):
            raise ConfigurationError(
                f"GuardPolicy.store takes a LimitStore, not {type(self.store).__name__}"
            )
        if self.requests or self.quotas:
            store = self.store if self.store is not None else MemoryLimitStore()
            limiter = Limiter(
                self.requests, self.quotas, store=store, clock=self.clock, prefix=self.key_prefix
            )
            object.__setattr__(self, "store", store)
            object.__setattr__(self, "_limiter", limiter)
        if self.bulkhead is not None:
            if not isinstance(self.bulkhead, Bulkhead):
                raise ConfigurationError(
                    f"GuardPolicy.bulkhead takes a Bulkhead, not {type(self.bulkhead).__name__}"
                )
            if self.slot_store is not None and not isinstance(self.slot_store, SlotStore):
                raise ConfigurationError(
                    "GuardPolicy.slot_store takes a SlotStore, not "
                    f"{type(self.slot_store).__name__}"
                )
            slot_store = self.slot_store if self.slot_store is not None else MemorySlotStore()
            object.__setattr__(self, "slot_store", slot_store)
            object.__setattr__(self, "_gate", BulkheadGate(self.bulkhead, Slots(slot_store)))

    @property
    def gate(self) -> BulkheadGate | None:
        """The bulkhead as applied (one per policy, so every graph built with it shares it)."""
        return self._gate

    async def drain(self) -> None:
        """Wait for settlements and slot releases still in flight (before a loop ends, say)."""
        if self._limiter is not None:
            await self._limiter.drain()
        if self._gate is not None:
            await self._gate.drain()

    def input_problem(self, question: object) -> str | None:
        """Why ``question`` would be refused (None when it would not): the guard's own check."""
        return input_problem(question, self.max_input_bytes)

    @property
    def limiter(self) -> Limiter | None:
        """The limiter over this policy's limits and store (one per policy); None without limits.

        Every graph built with this policy counts in it; ``await policy.limiter.drain()``
        waits for settlements still in flight (before an event loop ends, say).
        """
        return self._limiter


def _whole(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(
            f"GuardPolicy.{name} is {value!r}: give a whole number, at least {least}"
        )


@dataclass(frozen=True)
class CacheAnswer:
    """A cached answer: the state update it restores, and the tier that found it."""

    update: Mapping[str, Any]
    tier: Literal["exact", "semantic"] = "exact"


@dataclass(frozen=True)
class CachePolicy:
    """Answer caching around the run.

    The cache tiers are not built yet: :meth:`lookup` finds nothing and
    :meth:`store` keeps nothing, so every run records a miss. The steps, their
    spans and metrics, and the routing are final: a lookup that returns a
    :class:`CacheAnswer` writes it into the state and skips the user's nodes, and
    a subclass can script one (the tests do).
    """

    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        """The cached answer for this run, if any (none: the tiers are not built)."""
        return None

    def store(self, state: Any, scope: RunScope) -> bool:
        """Store the run's answer; whether it was stored (never, yet).

        Called as the run's scope closes, once, with the run's output as ``state``,
        and only for a run that ended normally and was not refused, answered from
        the cache or degraded. It runs inline: keep it short.
        """
        return False

    def stale(self, state: Any, scope: RunScope) -> Mapping[str, Any] | None:
        """A stale answer for a run that is degrading: its state update, or None (not built).

        The first level of the degradation ladder asks this; until the cache tiers
        exist there is nothing stale to give.
        """
        return None


@dataclass(frozen=True)
class NodeOps:
    """Per-node settings.

    ``timeout`` is the node's stage limit: each attempt gets ``min(timeout, the
    run's time left)``, sync nodes included (see :mod:`graphops.resilience.budget`).
    ``retry`` is LangGraph's own ``retry_policy`` (never retrying past the run's
    deadline). ``degrade`` is this node's own degradation ladder (``()``: it fails
    instead of degrading); None takes ``Ops.degrade``'s.
    """

    timeout: float | None = None
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None
    degrade: tuple[DegradeLevel, ...] | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not 0 < self.timeout < float("inf")
        ):
            raise ConfigurationError(
                f"NodeOps.timeout is {self.timeout!r}: give a positive number of seconds"
            )
        if self.degrade is not None:
            check_levels("NodeOps.degrade", self.degrade)
            object.__setattr__(self, "degrade", tuple(self.degrade))


@dataclass(frozen=True)
class Ops:
    """Everything :func:`graphops.build_observed_graph` inserts, in one object.

    ``telemetry="default"`` uses the process-wide pipeline (exporters from
    ``GRAPHOPS_TRACES_EXPORTER``); pass a :class:`~graphops.observe.Telemetry` to
    choose exporters, or ``None`` to switch telemetry off.
    """

    guard: GuardPolicy | None = None
    cache: CachePolicy | None = None
    budget: BudgetPolicy | None = None
    degrade: DegradePolicy | None = None
    telemetry: Telemetry | Literal["default"] | None = "default"
    nodes: Mapping[str, NodeOps] = field(default_factory=dict)

    @classmethod
    def all_steps(cls, telemetry: Telemetry | Literal["default"] | None = "default") -> Ops:
        """Every step on with its default policy: guard, cache, budget and degradation.

        The default ladder has no embeddings, so it skips the extractive level: give
        ``DegradePolicy(embeddings=…)`` for it.
        """
        return cls(
            guard=GuardPolicy(),
            cache=CachePolicy(),
            budget=BudgetPolicy(),
            degrade=DegradePolicy(),
            telemetry=telemetry,
        )
