"""A second process for the breaker's cross-process tests.

``python -m tests.integration.breaker_worker SPEC_JSON`` makes the breaker the JSON
names (``url``, ``prefix``, ``name``, ``policy``) on Redis, then, by ``mode``:

* ``open``: records failed calls until the breaker opens, prints one JSON line
  (``state`` and the ``transitions`` it reported, each ``[from, to, reason]``), exits;
* ``probes``: starts ``threads`` threads and says ``ready``; on ``go`` each asks for
  one permit at once; prints how many were probes and the transitions it reported;
  then waits for ``done`` and exits without reporting the probes (they stay out).
"""

from __future__ import annotations

import json
import sys
import threading

from graphops.resilience.breaker import BreakerPolicy, CircuitBreaker, Permit, Transition
from graphops.resilience.breaker_redis import RedisBreakerStore


def main(spec: dict[str, object]) -> None:
    store = RedisBreakerStore(str(spec["url"]), timeout=2.0, prefix=str(spec["prefix"]))
    events: list[Transition] = []
    policy = BreakerPolicy(**spec["policy"])  # type: ignore[arg-type]
    breaker = CircuitBreaker(str(spec["name"]), policy, store, on_transition=events.append)
    if spec["mode"] == "open":
        for _ in range(policy.window):
            permit = breaker.permit()
            if permit is None or breaker.record(permit, ok=False, duration_s=0.01) == "open":
                break
        print(json.dumps({"state": breaker.state(), "transitions": _plain(events)}), flush=True)
        return
    go = threading.Event()
    results: list[Permit | None] = []
    lock = threading.Lock()

    def one() -> None:
        go.wait(60)
        permit = breaker.permit()
        with lock:
            results.append(permit)

    threads = [threading.Thread(target=one) for _ in range(int(str(spec["threads"])))]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    go.set()
    for thread in threads:
        thread.join(60)
    probes = sum(1 for p in results if p is not None and p.probe)
    print(json.dumps({"probes": probes, "transitions": _plain(events)}), flush=True)
    sys.stdin.readline()


def _plain(events: list[Transition]) -> list[list[str]]:
    return [[e.from_state, e.to_state, e.reason] for e in events]


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
