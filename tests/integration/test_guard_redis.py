"""The guard on real Redis, through built graphs: exact across processes, safe in outages.

Two processes share the limits; a killed process's run slots come back; a
private ``redis-server`` killed mid-load shows fail-open and fail-closed, and
that no run hangs; ``graphops limits show|reset`` read and clear the same keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from graphops.builder import build_observed_graph
from graphops.limits import RequestLimit, TokenQuota
from graphops.limits.redis import RedisLimitStore
from graphops.limits.slots_redis import RedisSlotStore
from graphops.policies import GuardPolicy, Ops
from tests.integration.guard_worker import build
from tests.integration.redis_support import RedisServer
from tests.integration.support import graphops_for

ROOT = Path(__file__).resolve().parents[2]


def workers(config: dict[str, Any], n: int = 2) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.guard_worker", json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


def summaries(processes: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    out = []
    for process in processes:
        stdout, _ = process.communicate(timeout=300)
        assert process.returncode == 0, stdout
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_two_processes_admit_exactly_the_limit_in_total(
    shared_redis_url: str, redis_prefix: str
) -> None:
    config = {
        "url": shared_redis_url,
        "prefix": redis_prefix,
        "requests": [{"per": "tenant", "rate": "30/minute"}],
        "who": {"tenant": "acme"},
        "runs": 30,  # each process sends the limit's worth, at once
    }
    results = summaries(workers(config))
    assert sum(r.get("allowed", 0) for r in results) == 30
    assert sum(r.get("rate_limited", 0) for r in results) == 30


def test_two_processes_never_settle_past_the_quota(
    shared_redis_url: str, redis_prefix: str
) -> None:
    # each run reserves 119 + 1 byte = 120 tokens (an upper bound) and uses 1 + 99 = 100
    config = {
        "url": shared_redis_url,
        "prefix": redis_prefix,
        "quotas": [{"per": "user", "tokens": 3000}],
        "token_estimate": 119,
        "words": 99,
        "who": {"user": "ann"},
        "runs": 25,
    }
    results = summaries(workers(config))
    admitted = sum(r.get("allowed", 0) for r in results)
    policy = GuardPolicy(
        quotas=(TokenQuota("user", 3000),),
        store=RedisLimitStore.from_url(shared_redis_url, timeout=1.0),
        key_prefix=redis_prefix,
    )
    assert policy.limiter is not None
    (row,) = policy.limiter.usage("user", "ann")
    assert row["used"] == admitted * 100 <= 3000
    assert admitted >= 3000 // 120  # at least the reservations that fit at once
    assert sum(r.get("quota_exceeded", 0) for r in results) == 50 - admitted


def test_a_killed_processs_run_slots_come_back_after_their_ttl(
    shared_redis_url: str, redis_prefix: str
) -> None:
    config = {
        "url": shared_redis_url,
        "prefix": redis_prefix,
        "bulkhead": {"slots": 2, "wait_s": 0, "ttl_s": 1.0},
        "who": {"tenant": "acme"},
        "runs": 2,
        "hold": 600,  # its runs hold both slots until it is killed
    }
    (holder,) = workers(config, 1)
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline()) == {"started": True}
    store = RedisSlotStore.from_url(shared_redis_url, timeout=1.0, prefix=redis_prefix)
    deadline = time.monotonic() + 30
    while store.occupancy("runs:tenant%3Aacme")[0] < 2:
        assert time.monotonic() < deadline, "the worker never took both slots"
        time.sleep(0.05)
    app = build({**config, "hold": 0, "runs": 1})
    refused = app.invoke({"question": "q"}, {"metadata": {"tenant": "acme"}})
    assert refused["graphops"]["guard"]["reason"] == "bulkhead_full"  # renewed while alive
    holder.kill()
    holder.wait(10)
    deadline = time.monotonic() + 30
    while True:
        out = app.invoke({"question": "q"}, {"metadata": {"tenant": "acme"}})
        if out["graphops"]["guard"]["outcome"] == "allowed":
            break
        assert time.monotonic() < deadline, "the killed process's slots never came back"
        time.sleep(0.2)
    assert out["answer"]
    assert store.occupancy("runs:tenant%3Aacme") == (0, 0)


@pytest.mark.parametrize("fail", ["open", "closed"])
def test_redis_killed_mid_load_fails_as_configured_and_no_run_hangs(
    private_redis: RedisServer, fail: str
) -> None:
    policy = GuardPolicy(
        requests=(RequestLimit("user", "100000/minute", fail=fail),),  # type: ignore[arg-type]
        store=RedisLimitStore.from_url(private_redis.url),  # the 50 ms default timeout
    )
    app = build_observed_graph(_qa(), ops=Ops(guard=policy, telemetry=None))
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            out = app.invoke({"question": "q"}, {"metadata": {"user": "ann"}})
            guard = out["graphops"]["guard"]
            label = "unchecked" if guard.get("unchecked") else guard["reason"] or "allowed"
            with lock:
                outcomes.append((label, time.monotonic() - started))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    private_redis.kill()  # mid-load
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a run hung after Redis died"
    labels = [label for label, _ in outcomes]
    assert labels[0] == "allowed"  # checked while Redis was up
    after = "unchecked" if fail == "open" else "limiter_unavailable"
    assert after in labels
    assert set(labels) <= {"allowed", after}
    assert max(seconds for _, seconds in outcomes) < 5  # a hang guard, not a timing claim


def test_limits_show_and_reset_read_and_clear_the_shared_counters(
    shared_redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        "requests:\n  - {per: user, rate: 5/minute}\nquotas:\n  - {per: user, tokens: 1000}\n"
    )
    policy = GuardPolicy(
        requests=(RequestLimit("user", "5/minute"),),
        quotas=(TokenQuota("user", 1000),),
        token_estimate=0,
        store=RedisLimitStore.from_url(shared_redis_url, timeout=1.0),
    )
    app = build_observed_graph(_qa(), ops=Ops(guard=policy, telemetry=None))
    for _ in range(2):
        app.invoke({"question": "q"}, {"metadata": {"user": f"{redis_prefix}ann"}})
    env = {"GRAPHOPS_LIMITS_FILE": str(limits), "GRAPHOPS_REDIS_URL": shared_redis_url}
    from graphops.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    user = f"{redis_prefix}ann"
    shown = graphops_for(settings, "limits", "show", "--user", user, "--json", **env)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["limits"]
    assert [(r["kind"], r["used"], r["remaining"]) for r in rows] == [
        ("requests", 2, 3),
        ("tokens", 20, 980),  # 2 runs of 1 prompt token + 9 words
    ]
    reset = graphops_for(settings, "limits", "reset", "--user", user, **env)
    assert reset.returncode == 0, reset.stderr
    assert "cleared 2 counters" in reset.stdout
    audit = [json.loads(line) for line in reset.stderr.splitlines() if line.startswith("{")]
    assert any(a["event"] == "limits reset" and a["id"] == user for a in audit)
    shown = graphops_for(settings, "limits", "show", "--user", user, "--json", **env)
    assert [r["used"] for r in json.loads(shown.stdout)["limits"]] == [0, 0]


def _qa() -> Any:
    from tests.unit.test_guard_limits import qa_graph

    return qa_graph()
