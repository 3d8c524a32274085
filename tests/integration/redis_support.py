"""Redis for the integration tests: the shared server, private servers to break, and workers.

* ``shared_redis_url``: the Redis on 127.0.0.1:6379, shared with other users, so
  never flushed: every test takes a unique key prefix (``redis_prefix``) and its
  keys are deleted afterwards. Without it the test is skipped, unless ``CI`` is
  set, where a missing Redis fails the test.
* ``private_redis``: a ``redis-server`` of the test's own on a free port, to kill,
  restart or put to sleep (``DEBUG SLEEP``).
* :func:`admit_in_threads` and :func:`aadmit_in_tasks` fire admissions at once,
  and :func:`worker` does it from another process (``python -c``, see :data:`WORKER`).

Import the fixtures into a test module: ``from tests.integration.redis_support import …``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from graphops.limits.limiter import Admission, Limiter
from graphops.limits.policy import RequestLimit, TokenQuota
from graphops.limits.redis import RedisLimitStore
from graphops.limits.store import LimitStore
from graphops.runtime.scope import Identity

ROOT = Path(__file__).resolve().parents[2]
SHARED_URL = "redis://127.0.0.1:6379/0"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


# ---------------------------------------------------------------- the shared server
@pytest.fixture
def shared_redis_url() -> str:
    """The shared Redis; skipped when it does not answer, failed instead when ``CI`` is set."""
    client = redis.Redis.from_url(SHARED_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {SHARED_URL} ({exc}), and CI is set")
        pytest.skip(f"no Redis at {SHARED_URL} ({exc})")
    finally:
        client.close()
    return SHARED_URL


@pytest.fixture
def redis_prefix(shared_redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"graphops-test:{uuid.uuid4().hex}:"
    yield prefix
    delete_prefixed(shared_redis_url, prefix)


def delete_prefixed(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN, never FLUSH); how many there were."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


# ---------------------------------------------------------------- private servers
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A private ``redis-server``: no persistence, ``DEBUG`` allowed, on ``port``."""

    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            client = self.client(timeout=0.5)
            try:
                client.ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A plain client of this server (not the store's), without redis-py's retries."""
        return redis.Redis(
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own, running; killed at the end."""
    if not Path(REDIS_SERVER).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no {REDIS_SERVER}, and CI is set")
        pytest.skip(f"no {REDIS_SERVER}")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


# ---------------------------------------------------------------- concurrent admissions
def admit_in_threads(
    limiter: Limiter, identities: Sequence[Identity], tokens: int = 0
) -> list[Admission]:
    """One admission per identity, each from its own thread, all released at once."""
    barrier = threading.Barrier(len(identities))
    results: list[Admission | None] = [None] * len(identities)

    def one(index: int) -> None:
        barrier.wait(30)
        results[index] = limiter.admit(identities[index], tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(identities))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(r is not None for r in results), "an admission thread did not finish"
    return [r for r in results if r is not None]


async def aadmit_in_tasks(
    limiter: Limiter, identities: Sequence[Identity], tokens: int = 0
) -> list[Admission]:
    """One ``aadmit`` per identity, each in its own task of the running loop, started at once."""
    results: list[Admission | None] = [None] * len(identities)

    async def one(index: int) -> None:
        results[index] = await limiter.aadmit(identities[index], tokens)

    async with anyio.create_task_group() as group:
        for i in range(len(identities)):
            group.start_soon(one, i)
    return [r for r in results if r is not None]


def used_for(index: int, estimate: int) -> int:
    """What run ``index`` really used: somewhere from 0 to its ``estimate``."""
    return (index * 7919) % (estimate + 1)


def limiter_for(mode: str, store: LimitStore | None, prefix: str, now: float) -> Limiter:
    """The limiter of the concurrency tests: 50 runs a minute, or :data:`QUOTA` tokens a day."""
    requests = [RequestLimit("user", "50/minute", fail="closed")] if mode == "rate" else []
    quotas = [TokenQuota("user", QUOTA, fail="closed")] if mode == "quota" else []
    return Limiter(requests, quotas, store=store, prefix=prefix, clock=lambda: now)


QUOTA = 1000
ESTIMATE = 30


# ---------------------------------------------------------------- another process
WORKER = "import sys; from tests.integration.redis_support import worker; worker(sys.argv[1])"


def worker(spec_json: str) -> None:
    """A process of the multi-process tests, driven over stdin and stdout.

    Says ``ready`` once its threads wait, fires them all on ``go``, prints what
    was admitted (JSON), then on ``settle`` settles each admitted run with
    :func:`used_for` and prints the tokens it settled.
    """
    spec = json.loads(spec_json)
    store = RedisLimitStore.from_url(spec["url"], timeout=5.0)
    limiter = limiter_for(spec["mode"], store, spec["prefix"], spec["now"])
    identity = Identity(user="shared-user")
    go = threading.Event()
    results: list[Admission | None] = [None] * spec["threads"]

    def one(index: int) -> None:
        go.wait(60)
        results[index] = limiter.admit(identity, spec["tokens"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(spec["threads"])]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    go.set()
    for thread in threads:
        thread.join(60)
    admitted = [i for i, r in enumerate(results) if r is not None and r.allowed]
    reasons = sorted({r.reason for r in results if r is not None and r.reason})
    unchecked = sum(1 for r in results if r is not None and r.unchecked)
    print(json.dumps({"admitted": len(admitted), "reasons": reasons, "unchecked": unchecked}))
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "settle":
        return
    settled = 0
    for i in admitted:
        admission = results[i]
        assert admission is not None
        used = used_for(spec["offset"] + i, spec["tokens"])
        limiter.settle(admission, used)
        settled += used
    print(json.dumps({"settled": settled}), flush=True)
    store.close()


def start_worker(spec: dict[str, object]) -> subprocess.Popen[str]:
    """:func:`worker` in a new Python process, from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def tell(processes: Sequence[subprocess.Popen[str]], line: str) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()


def hear(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"worker {process.pid} ended early (exit code {process.wait(10)})"
    return line.strip()


def run_workers(
    url: str, prefix: str, mode: str, threads: int, tokens: int, now: float
) -> dict[str, Any]:
    """Two :func:`worker` processes, started together: what they admitted and settled."""
    spec = {"url": url, "prefix": prefix, "mode": mode, "now": now, "threads": threads}
    workers = [start_worker({**spec, "tokens": tokens, "offset": i * threads}) for i in range(2)]
    try:
        for worker in workers:
            assert hear(worker) == "ready"
        tell(workers, "go")  # every run starts before any settles
        decided = [json.loads(hear(worker)) for worker in workers]
        tell(workers, "settle")
        settled = [json.loads(hear(worker))["settled"] for worker in workers]
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            for pipe in (worker.stdin, worker.stdout):
                if pipe is not None:
                    pipe.close()
    return {
        "admitted": sum(d["admitted"] for d in decided),
        "unchecked": sum(d["unchecked"] for d in decided),
        "reasons": {r for d in decided for r in d["reasons"]},
        "settled": sum(settled),
    }


def sleep_server(server: RedisServer, seconds: int) -> tuple[threading.Thread, int]:
    """``DEBUG SLEEP seconds`` on ``server`` from another connection, once it sleeps: the
    sleeping thread, and how many connections this made."""
    sleeper_client = server.client(timeout=seconds + 10)
    sleeper_client.ping()
    sleeper = threading.Thread(
        target=sleeper_client.execute_command, args=("DEBUG", "SLEEP", seconds), daemon=True
    )
    sleeper.start()
    connections = 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until a PING goes unanswered: the server sleeps
        probe = server.client(timeout=0.05)
        connections += 1
        try:
            probe.ping()
        except redis.TimeoutError:
            return sleeper, connections
        finally:
            probe.close()
        time.sleep(0.01)
    raise AssertionError("DEBUG SLEEP did not take hold")
