"""Admission decisions per second, four limits a run, memory and Redis, measured in one process.

    .venv/bin/python benchmarks/limiter.py [--decisions N] [--rounds R] [--redis URL] [--tasks K]

Each decision is one admission of a run with four limits: the user's request
rate, the tenant's, the IP's, and a reservation on the user's token quota. The
runs cycle through N distinct users (a tenant per hundred users, an IP per
user), so no limit refuses and every decision takes the counting path. Rows:

* ``memory, admit``: :meth:`Limiter.admit` on :class:`MemoryLimitStore`, a sync loop;
* ``redis, admit``: the same on :class:`RedisLimitStore` at ``--redis`` (the shared
  Redis by default): one round trip at a time;
* ``redis, aadmit``: :meth:`Limiter.aadmit` from one task of an event loop;
* ``redis, aadmit x K tasks``: K tasks of one loop deciding at once, as a server
  with many runs in flight does;
* ``… store only``: the store's ``admit`` on checks built beforehand, which is what
  the store costs without the limiter's key building.

The configurations take turns round by round, so the machine's drift hits all
alike. Redis keys live under a prefix of this run's own and are deleted at the
end (SCAN, never FLUSH). Printed: decisions per second (the median round, the
lowest and highest), the median and 99th-percentile decision in microseconds,
and the target (memory: 50k/s, Redis: 5k/s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from graphops.limits.limiter import Limiter
from graphops.limits.memory import MemoryLimitStore
from graphops.limits.policy import RequestLimit, TokenQuota
from graphops.limits.redis import RedisLimitStore
from graphops.limits.store import LimitStore, QuotaCheck, RateCheck
from graphops.runtime.scope import Identity

SHARED_REDIS = "redis://127.0.0.1:6379/0"
MEMORY_TARGET = 50_000
REDIS_TARGET = 5_000
RESERVE = 500  # tokens a run reserves

Latencies = list[float]
Round = tuple[float, Latencies]  # a round's wall seconds, and each decision's


@dataclass
class Row:
    """One configuration: what one round costs, and what the rounds measured."""

    name: str
    run: Callable[[], Round]
    target: float | None
    per_s: list[float] = field(default_factory=list)
    latencies_s: Latencies = field(default_factory=list)


def four_limits(store: LimitStore, prefix: str) -> Limiter:
    """User, tenant and IP request rates and the user's token quota, none of them refusing."""
    return Limiter(
        [
            RequestLimit("user", "100/minute"),
            RequestLimit("tenant", "1000000/minute"),
            RequestLimit("ip", "100/minute"),
        ],
        [TokenQuota("user", 10_000_000)],
        store=store,
        prefix=prefix,
    )


def identities(count: int) -> list[Identity]:
    return [
        Identity(
            user=f"user-{i}",
            tenant=f"tenant-{i // 100}",
            ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
        )
        for i in range(count)
    ]


def checks_of(
    limiter: Limiter, identity: Identity, now: float
) -> tuple[list[RateCheck], list[QuotaCheck]]:
    """The checks the limiter would send the store for ``identity``, built with its keys."""
    rates = []
    for limit in limiter.requests:
        who = getattr(identity, limit.per)
        for i, (amount, window) in enumerate(limit.windows()):
            rates.append(RateCheck(limiter.rate_key(limit, who, i), amount, window))
    quotas = [
        QuotaCheck(
            limiter.quota_key(q, identity.user or "", now), q.tokens, RESERVE, q.period(now)[1]
        )
        for q in limiter.quotas
    ]
    return rates, quotas


def _admitted(admitted: bool, unchecked: bool = False) -> None:
    if not admitted or unchecked:
        raise SystemExit("a decision was refused or unchecked: the benchmark measures admissions")


# ---------------------------------------------------------------- one round of each
def limiter_round(limiter: Limiter, who: list[Identity]) -> Round:
    latencies = []
    started = time.perf_counter()
    for identity in who:
        before = time.perf_counter()
        admission = limiter.admit(identity, RESERVE)
        latencies.append(time.perf_counter() - before)
        _admitted(admission.allowed, admission.unchecked)
    return time.perf_counter() - started, latencies


def store_round(
    store: LimitStore, checks: list[tuple[list[RateCheck], list[QuotaCheck]]], now: float
) -> Round:
    latencies = []
    started = time.perf_counter()
    for rates, quotas in checks:
        before = time.perf_counter()
        verdict = store.admit(rates, quotas, now)
        latencies.append(time.perf_counter() - before)
        _admitted(verdict.admitted)
    return time.perf_counter() - started, latencies


def async_round(limiter: Limiter, store: RedisLimitStore, who: list[Identity], tasks: int) -> Round:
    """One round in a loop of its own: connected first, timed, its asyncio client closed."""
    latencies: Latencies = []
    elapsed = 0.0

    async def decide(part: list[Identity]) -> None:
        for identity in part:
            before = time.perf_counter()
            admission = await limiter.aadmit(identity, RESERVE)
            latencies.append(time.perf_counter() - before)
            _admitted(admission.allowed, admission.unchecked)

    async def main() -> None:
        nonlocal elapsed
        try:
            await asyncio.gather(*(limiter.aadmit(who[i], RESERVE) for i in range(tasks)))
            latencies.clear()  # the loop's connections are open: now measure
            started = time.perf_counter()
            await asyncio.gather(*(decide(who[i::tasks]) for i in range(tasks)))
            elapsed = time.perf_counter() - started
        finally:
            await store.aclose()

    asyncio.run(main())
    return elapsed, latencies


def measure(rows: list[Row], rounds: int) -> None:
    """Every row once per round, in turn; a round's decisions/s from its wall time."""
    for row in rows:
        row.run()  # warm up: connections, the script loaded, caches
    for _ in range(rounds):
        for row in rows:
            elapsed, latencies = row.run()
            row.per_s.append(len(latencies) / elapsed)
            row.latencies_s.extend(latencies)


# ---------------------------------------------------------------- admission decisions
def admission_rows(count: int, rounds: int, url: str, tasks: int) -> list[Row]:
    """Admission decisions on the counting path: memory, Redis sync and async, stores alone."""
    who = identities(count)
    now = time.time()
    memory_store = MemoryLimitStore()
    memory = four_limits(memory_store, "bench:")
    memory_checks = [checks_of(memory, i, now) for i in who]

    prefix = f"graphops-bench:{uuid.uuid4().hex}:"
    store = RedisLimitStore.from_url(url, timeout=1.0)
    shared = four_limits(store, prefix)
    redis_checks = [checks_of(shared, i, now) for i in who]
    rows = [
        Row("memory, admit", lambda: limiter_round(memory, who), MEMORY_TARGET),
        Row("memory, store only", lambda: store_round(memory_store, memory_checks, now), None),
        Row("redis, admit", lambda: limiter_round(shared, who), REDIS_TARGET),
        Row("redis, store only", lambda: store_round(store, redis_checks, now), None),
        Row("redis, aadmit", lambda: async_round(shared, store, who, 1), REDIS_TARGET),
        Row(
            f"redis, aadmit x {tasks} tasks",
            lambda: async_round(shared, store, who, tasks),
            REDIS_TARGET,
        ),
    ]
    try:
        measure(rows, rounds)
    finally:
        store.close()
        deleted = delete_prefixed(url, prefix)
        print(f"deleted the {deleted} benchmark keys under {prefix}\n")
    return rows


def delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``, in batches (SCAN and UNLINK, never FLUSH)."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=5000):
            batch.append(key)
            if len(batch) == 5000:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


def print_table(title: str, rows: list[Row]) -> None:
    """Decisions/s (median round, lowest-highest), p50 and p99 µs, the target and whether met."""
    print(f"{title:<32}{'decisions/s':>12}{'rounds':>18}{'p50 µs':>9}{'p99 µs':>9}{'target':>9}")
    for row in rows:
        median = statistics.median(row.per_s)
        spread = f"{min(row.per_s):,.0f}-{max(row.per_s):,.0f}"
        p50 = statistics.median(row.latencies_s) * 1e6
        p99 = statistics.quantiles(row.latencies_s, n=100)[98] * 1e6
        target = "" if row.target is None else f"{row.target:,.0f}"
        met = "" if row.target is None else ("  met" if median >= row.target else "  below")
        print(f"{row.name:<32}{median:>12,.0f}{spread:>18}{p50:>9.0f}{p99:>9.0f}{target:>9}{met}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=10_000, help="decisions per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default=SHARED_REDIS, help="the Redis URL")
    parser.add_argument("--tasks", type=int, default=16, help="tasks of the concurrent row")
    parser.add_argument(
        "--graph-iterations", type=int, default=1000, help="invokes per round, refusal path"
    )
    args = parser.parse_args()
    print_table(
        "admission, 4 limits a run",
        admission_rows(args.decisions, args.rounds, args.redis, args.tasks),
    )
    refusal_path(args.redis, args.graph_iterations, args.rounds)


def refusal_path(url: str, iterations: int, rounds: int) -> None:
    """A refused run end to end through a built graph, against the plain graph's allowed run.

    The plain 5-node graph runs all its nodes; each observed one (telemetry on, to
    a no-op exporter) is refused at its head: a user over a 1/hour limit on the
    memory store and on Redis, and an input the guard finds invalid. The graphs
    take turns on every invoke (benchmarks/overhead.py's interleaving).
    """
    from _graphs import five_nodes
    from overhead import WHO, NullExporter, interleaved_ms
    from overhead import print_table as print_ratios
    from prometheus_client import CollectorRegistry

    from graphops.builder import build_observed_graph
    from graphops.observe import Metrics, Telemetry
    from graphops.policies import GuardPolicy, Ops

    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))
    prefix = f"graphops-bench:{uuid.uuid4().hex}:"
    store = RedisLimitStore.from_url(url, timeout=1.0)
    limited = (RequestLimit("user", "1/hour"),)
    graphs = {
        "plain (allowed, 5 nodes)": five_nodes().compile(),
        "observed, refused: rate limit, memory": build_observed_graph(
            five_nodes(), ops=Ops(guard=GuardPolicy(requests=limited), telemetry=telemetry)
        ),
        "observed, refused: rate limit, redis": build_observed_graph(
            five_nodes(),
            ops=Ops(
                guard=GuardPolicy(requests=limited, store=store, key_prefix=prefix),
                telemetry=telemetry,
            ),
        ),
        "observed, refused: invalid input": build_observed_graph(
            five_nodes(), ops=Ops(guard=GuardPolicy(), telemetry=telemetry)
        ),
    }
    state = {"x": 0, "question": "\x00"}  # the invalid input; the other graphs ignore it

    def run(graph: object) -> object:
        return graph.invoke(state, WHO)  # type: ignore[attr-defined]

    try:
        for graph in graphs.values():  # warm up: the first run of each limited one is allowed
            for _ in range(200):
                run(graph)
        results = [interleaved_ms(graphs, run, iterations) for _ in range(rounds)]
        print_ratios("a refused run end to end (invoke)", results, "plain (allowed, 5 nodes)")
    finally:
        store.close()
        delete_prefixed(url, prefix)
        telemetry.shutdown()


if __name__ == "__main__":
    main()
