"""The ops configuration: which steps are on and how each node is treated.

Policies are small immutable value objects, in the manner of tenacity's strategies
and httpx's ``Timeout``; the code that applies them lives in :mod:`graphops.steps`
and :mod:`graphops.builder`. A step whose policy is ``None`` is off and inserts
nothing: no node, no wrapper, no cost. The cache's own code lives in
:mod:`graphops.cache`; failover lives in the model layer
(:mod:`graphops.models.resilient`), not in the graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langgraph.types import CachePolicy as LangGraphCachePolicy
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
    from graphops.flags.resolver import Flags
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
    """A cached answer: the state update it restores, the tier that found it, and how close.

    ``similarity`` is 1.0 for the exact tier; ``age_s`` the entry's age; ``key``
    its exact key (what :meth:`CachePolicy.feedback` reports on).
    """

    update: Mapping[str, Any]
    tier: Literal["exact", "semantic"] = "exact"
    similarity: float = 1.0
    age_s: float = 0.0
    key: str | None = None


@dataclass(frozen=True)
class CachePolicy:
    """Answer caching around the run: an exact tier, and a semantic tier under an error bound.

    See :mod:`graphops.cache.answers` for what a lookup keys on, what a hit
    restores and what is stored, and docs/caching.md for the measurements.

    ``answers`` is the store that holds them (memory by default, this policy's own; a
    :class:`~graphops.cache.store_sql.SqlAnswerStore` keeps them in SQLite or
    Postgres). ``semantic`` (a :class:`~graphops.cache.semantic.SemanticTier`)
    turns on the semantic tier for single-turn questions, held to
    ``error_bound`` (:class:`~graphops.cache.decide.ErrorBound`: δ, the
    calibration points, the verifier; without points, it serves nothing).
    ``ttl_s`` is the exact tier's TTL (None: none); ``semantic_ttl_s`` how old an
    entry may be to answer a similar question. ``share="user"`` keeps answers
    private to each user (``"tenant"``: shared within a tenant and access scope).

    The key's other fields: ``prompts`` and ``prompt_names`` (the prompts the
    graph uses, their versions snapshotted at lookup and pinned for the run),
    ``model`` (the chat model, or a fingerprint string; None: the key says
    ``"unknown"``, so give one whenever the model can change) and
    ``corpus_version`` (a string or a function asked at each lookup, such as the
    retriever's ``lambda: retriever.corpus_version``).

    ``restore`` are the state keys a hit restores; ``answer_key`` must be among
    the output's keys for a run to be stored, and a run is not stored when any
    ``skip_if`` key is true (``("low_confidence",)``, say: none by default, since
    the same run would give the same answer again). ``tokens_cost`` is the price
    of a token, counted in ``graphops_cache_cost_saved_total`` with every hit. ``clock`` gives epoch
    seconds.
    """

    answers: Any = field(default=None, compare=False)
    semantic: Any = field(default=None, compare=False)
    error_bound: Any = None
    ttl_s: float | None = 86_400.0
    semantic_ttl_s: float | None = 86_400.0
    share: Literal["tenant", "user"] = "tenant"
    prompts: Any = field(default=None, compare=False)
    prompt_names: tuple[str, ...] = ()
    model: Any = field(default=None, compare=False)
    corpus_version: str | Callable[[], str | None] | None = field(default=None, compare=False)
    restore: tuple[str, ...] = ("answer", "sources")
    answer_key: str = "answer"
    sources_key: str | None = "sources"
    question_key: str = "question"
    messages_key: str | None = "messages"
    skip_if: tuple[str, ...] = ()
    tokens_cost: float = 0.0
    clock: Callable[[], float] = field(default=time.time, compare=False)
    _fingerprint: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _background: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from graphops.cache.decide import ErrorBound
        from graphops.cache.store import AnswerStore
        from graphops.cache.store_memory import MemoryAnswerStore

        if self.answers is None:
            object.__setattr__(self, "answers", MemoryAnswerStore())
        elif not isinstance(self.answers, AnswerStore):
            raise ConfigurationError(
                f"CachePolicy.answers takes an AnswerStore, not {type(self.answers).__name__}"
            )
        if self.error_bound is None:
            object.__setattr__(self, "error_bound", ErrorBound())
        elif not isinstance(self.error_bound, ErrorBound):
            kind = type(self.error_bound).__name__
            raise ConfigurationError(f"CachePolicy.error_bound takes an ErrorBound, not {kind}")
        if self.semantic is not None:
            from graphops.cache.semantic import SemanticTier

            if not isinstance(self.semantic, SemanticTier):
                raise ConfigurationError(
                    f"CachePolicy.semantic takes a SemanticTier, not {type(self.semantic).__name__}"
                )
        for name in ("ttl_s", "semantic_ttl_s"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ConfigurationError(
                    f"CachePolicy.{name} is {value!r}: give a positive number of seconds, or None"
                )
        if self.share not in ("tenant", "user"):
            raise ConfigurationError(f"CachePolicy.share is {self.share!r}: use 'tenant' or 'user'")
        for name in ("restore", "prompt_names", "skip_if"):
            items = getattr(self, name)
            if not isinstance(items, tuple | list) or not all(
                isinstance(i, str) and i for i in items
            ):
                raise ConfigurationError(
                    f"CachePolicy.{name} takes a tuple of names, not {items!r}"
                )
            object.__setattr__(self, name, tuple(items))
        if self.prompt_names and self.prompts is None:
            raise ConfigurationError("CachePolicy.prompt_names needs prompts= (the PromptSource)")
        if self.answer_key not in self.restore:
            raise ConfigurationError(
                f"CachePolicy.restore {self.restore!r} must hold answer_key {self.answer_key!r}"
            )

    @property
    def answer_store(self) -> Any:
        """The answer store (the policy's own in-memory one unless one was given)."""
        return self.answers

    @property
    def blocking(self) -> bool:
        """Whether a lookup or store does I/O (a database, an embedding): async runs offload it."""
        from graphops.cache.store_memory import MemoryAnswerStore

        return self.semantic is not None or not isinstance(self.answers, MemoryAnswerStore)

    @staticmethod
    def in_event_loop() -> bool:
        """Whether the caller runs on an event loop (where blocking I/O must not run)."""
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def store_soon(self, state: Any, scope: RunScope) -> None:
        """:meth:`store` in the policy's background worker (one thread: stores stay in order)."""
        from concurrent.futures import ThreadPoolExecutor

        if not self._background:
            self._background.append(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphops-cache")
            )
        self._background.append(self._background[0].submit(self.store, state, scope))
        self._background[1:] = [f for f in self._background[1:] if not f.done()]

    async def drain(self) -> None:
        """Wait for stores still running in the background worker."""
        import anyio.to_thread

        pending = list(self._background[1:])
        for future in pending:
            await anyio.to_thread.run_sync(future.result)

    def model_fingerprint(self) -> str:
        """The model chain's part of the key, computed once."""
        if not self._fingerprint:
            from graphops.cache.keys import model_fingerprint

            self._fingerprint.append(
                "unknown" if self.model is None else model_fingerprint(self.model)
            )
        return self._fingerprint[0]

    def corpus(self) -> str | None:
        """The corpus version now (asked of ``corpus_version`` when it is a function)."""
        version = self.corpus_version() if callable(self.corpus_version) else self.corpus_version
        return None if version is None else str(version)

    def lookup(self, state: Any, scope: RunScope) -> CacheAnswer | None:
        """The cached answer for this run, if any (:func:`graphops.cache.answers.lookup`)."""
        from graphops.cache.answers import lookup

        return lookup(self, state, scope)

    def store_answer(self, state: Any, scope: RunScope) -> tuple[bool, str | None]:
        """Store the run's answer: whether it was stored, and if not, why."""
        from graphops.cache.answers import store

        return store(self, state, scope)

    def store(self, state: Any, scope: RunScope) -> bool:
        """Store the run's answer; whether it was stored.

        Called as the run's scope closes, once, with the run's output as ``state``,
        and only for a run that ended normally and was not refused, answered from
        the cache or degraded. It runs inline: keep it short.
        """
        return self.store_answer(state, scope)[0]

    def stale(self, state: Any, scope: RunScope) -> Mapping[str, Any] | None:
        """This run's exact entry even if expired, for a run that is degrading; or None."""
        from graphops.cache.answers import stale

        return stale(self, state, scope)

    def feedback(self, outcome: Mapping[str, Any], correct: bool) -> bool:
        """Report whether a hit was right (``outcome``: the ops channel's ``cache``).

        A semantic hit reported wrong raises that entry's threshold above its
        similarity; enough right ones lower it (see :mod:`graphops.cache.decide`).
        """
        from graphops.cache.answers import feedback

        return feedback(self, outcome, correct)


@dataclass(frozen=True)
class NodeOps:
    """Per-node settings.

    ``timeout`` is the node's stage limit: each attempt gets ``min(timeout, the
    run's time left)``, sync nodes included (see :mod:`graphops.resilience.budget`).
    ``retry`` is LangGraph's own ``retry_policy`` (never retrying past the run's
    deadline). ``degrade`` is this node's own degradation ladder (``()``: it fails
    instead of degrading); None takes ``Ops.degrade``'s. ``cache`` is LangGraph's
    own node ``cache_policy`` (such as
    :func:`graphops.cache.retrieval.retrieval_cache_policy` for a retrieve node;
    give ``build_observed_graph`` a ``cache=`` backend for it). A setting the
    node already has is kept.
    """

    timeout: float | None = None
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None
    degrade: tuple[DegradeLevel, ...] | None = None
    cache: LangGraphCachePolicy[Any] | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not 0 < self.timeout < float("inf")
        ):
            raise ConfigurationError(
                f"NodeOps.timeout is {self.timeout!r}: give a positive number of seconds"
            )
        if self.cache is not None and not isinstance(self.cache, LangGraphCachePolicy):
            raise ConfigurationError(
                "NodeOps.cache takes LangGraph's CachePolicy (langgraph.types), not "
                f"{type(self.cache).__name__}"
            )
        if self.degrade is not None:
            check_levels("NodeOps.degrade", self.degrade)
            object.__setattr__(self, "degrade", tuple(self.degrade))


@dataclass(frozen=True)
class Ops:
    """Everything :func:`graphops.build_observed_graph` inserts, in one object.

    ``telemetry="default"`` uses the process-wide pipeline (exporters from
    ``GRAPHOPS_TRACES_EXPORTER``); pass a :class:`~graphops.observe.Telemetry` to
    choose exporters, or ``None`` to switch telemetry off. ``flags``
    (:class:`~graphops.flags.resolver.Flags`) gives each run the variant of every
    flag as it starts: on its spans (``graphops.variant``), and a flag named like a
    prompt picks that prompt's version (:func:`graphops.prompts.source.aprompt`).
    """

    guard: GuardPolicy | None = None
    cache: CachePolicy | None = None
    budget: BudgetPolicy | None = None
    degrade: DegradePolicy | None = None
    telemetry: Telemetry | Literal["default"] | None = "default"
    nodes: Mapping[str, NodeOps] = field(default_factory=dict)
    flags: Flags | None = None

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
