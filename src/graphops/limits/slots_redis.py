"""The Redis slot store: leases and fair queues shared by every process on one Redis.

Each key is three sorted sets, under one hash tag so a cluster keeps them together:

* ``…:holders`` — member: holder id, score: lease expiry (ms);
* ``…:queue`` — member: waiter id, score: its ticket (the last ticket + 1 when it
  joined), so rank is arrival order across processes and hosts;
* ``…:beats`` — member: waiter id, score: heartbeat expiry (ms).

Every call is one Lua script, so one round trip and atomic: it drops lapsed leases
and waiters whose heartbeat lapsed, then decides. A slot is granted only if there
is room for the caller in queue order (fewer live waiters ahead than free slots).

**Time is the Redis server's** (``TIME`` inside the script), not the client's: the
callers run on several hosts whose clocks drift apart, and a lease written with
one host's clock and judged by another's would end early or late by the skew. One
clock makes expiry and order consistent for everyone; a TTL still starts when the
script runs, so it never ends earlier than the caller thinks. (Redis ≥ 5 replicates
scripts by their effects, which makes ``TIME`` before writes allowed.) The sets get
a ``PEXPIRE`` just past their last entry, so abandoned keys vanish.

A call gets ``timeout`` seconds (connect and read, 50 ms by default) and no client
retries: ``redis.Redis(...)`` retries with backoff by default (10 times in redis-py
8.1; pools made by ``from_url`` happen not to), which would turn a dead Redis into a
stalled run, so ``Retry(NoBackoff(), 0)`` is passed explicitly. Every Redis error
becomes :class:`~graphops.limits.store.StoreUnavailable`. A ``redis.asyncio`` client
is bound to the event loop it first ran on, so one is kept per running loop; call
:meth:`RedisSlotStore.aclose` on a loop before it ends.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from graphops.limits.slot_store import Grant
from graphops.limits.store import StoreUnavailable

__all__ = ["RedisSlotStore"]

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders, queue, beats = KEYS[1], KEYS[2], KEYS[3]
local me = ARGV[1]
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', beats, '-inf', now, 'LIMIT', 0, 1000)
if #dead > 0 then
  redis.call('ZREM', queue, unpack(dead))
  redis.call('ZREM', beats, unpack(dead))
end
local function touch(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last > 0 then redis.call('PEXPIREAT', key, math.max(tonumber(last[2]), now) + 1000) end
end
local function touch_all()
  touch(holders)
  local beat = redis.call('ZRANGE', beats, 0, -1, 'WITHSCORES')
  local latest = now
  for i = 2, #beat, 2 do latest = math.max(latest, tonumber(beat[i])) end
  if #beat > 0 then
    redis.call('PEXPIREAT', beats, latest + 1000)
    redis.call('PEXPIREAT', queue, latest + 1000)
  end
end
"""

_ACQUIRE = (
    _PRELUDE
    + """
local capacity, ttl, queue_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local held = redis.call('ZCARD', holders)
if redis.call('ZSCORE', holders, me) then
  redis.call('ZADD', holders, now + ttl, me)
  touch(holders)
  return {1, 0, held, -1}
end
local rank = redis.call('ZRANK', queue, me)
local ahead = rank or redis.call('ZCARD', queue)
if held + ahead < capacity then
  redis.call('ZADD', holders, now + ttl, me)
  redis.call('ZREM', queue, me)
  redis.call('ZREM', beats, me)
  touch_all()
  return {1, 0, held + 1, -1}
end
if queue_ttl > 0 then
  if not rank then
    local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')
    local ticket = 1
    if #last > 0 then ticket = tonumber(last[2]) + 1 end
    redis.call('ZADD', queue, ticket, me)
  end
  redis.call('ZADD', beats, now + queue_ttl, me)
end
touch_all()
local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
local wait = -1
if #first > 0 then wait = tonumber(first[2]) - now end
return {0, ahead, held, wait}
"""
)
# The dead waiters are dropped 1000 at a time (unpack's limit), enough for one call.

_RENEW = (
    _PRELUDE
    + """
if not redis.call('ZSCORE', holders, me) then return 0 end
redis.call('ZADD', holders, now + tonumber(ARGV[2]), me)
touch(holders)
return 1
"""
)

_RELEASE = (
    _PRELUDE
    + """
local held = redis.call('ZREM', holders, me)
redis.call('ZREM', queue, me)
redis.call('ZREM', beats, me)
return held
"""
)

_OCCUPANCY = (
    _PRELUDE
    + """
return {redis.call('ZCARD', holders), redis.call('ZCARD', queue)}
"""
)

_SCRIPTS = {"acquire": _ACQUIRE, "renew": _RENEW, "release": _RELEASE, "occupancy": _OCCUPANCY}


def _ms(seconds: float) -> int:
    return max(math.ceil(seconds * 1000), 1)


def _grant(reply: Any) -> Grant:
    granted, ahead, held, wait = (int(x) for x in reply)
    return Grant(bool(granted), ahead, held, wait / 1000 if wait >= 0 else None)


class RedisSlotStore:
    """A :class:`~graphops.limits.slots.SlotStore` in Redis, shared across processes.

    Build it with :meth:`from_url`. ``prefix`` starts every key, so deployments can
    share one Redis.
    """

    remote = True

    def __init__(self, url: str, *, timeout: float = 0.05, prefix: str = "graphops:") -> None:
        self.url, self.timeout, self.prefix = url, timeout, prefix
        self._options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        self._client: redis.Redis = redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), **self._options
        )
        self._scripts = {name: self._client.register_script(s) for name, s in _SCRIPTS.items()}
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.05, prefix: str = "graphops:"
    ) -> RedisSlotStore:
        """A store on the Redis at ``url``; ``timeout`` bounds each call, in seconds."""
        return cls(url, timeout=timeout, prefix=prefix)

    def keys(self, key: str) -> list[str]:
        """The Redis keys of slot key ``key``: holders, queue, heartbeats."""
        base = f"{self.prefix}slots:{{{key}}}"
        return [f"{base}:holders", f"{base}:queue", f"{base}:beats"]

    # ------------------------------------------------------------ calls
    def _run(self, name: str, key: str, *args: str | int) -> Any:
        try:
            return self._scripts[name](keys=self.keys(key), args=list(args))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis slot store: {type(exc).__name__}: {exc}") from exc

    async def _arun(self, name: str, key: str, *args: str | int) -> Any:
        try:
            scripts = self._loop_scripts()
            return await scripts[name](keys=self.keys(key), args=list(args))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis slot store: {type(exc).__name__}: {exc}") from exc

    def _loop_scripts(self) -> dict[str, Any]:
        """This event loop's scripts (and client): redis.asyncio pools cannot change loops."""
        loop = asyncio.get_running_loop()
        with self._lock:
            scripts = self._loops.get(loop)
            if scripts is None:
                client = redis.asyncio.Redis.from_url(
                    self.url, retry=AsyncRetry(NoBackoff(), 0), **self._options
                )
                scripts = {name: client.register_script(s) for name, s in _SCRIPTS.items()}
                scripts["client"] = client
                self._loops[loop] = scripts
            return scripts

    # ------------------------------------------------------------ the SlotStore protocol
    def try_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        queue_ms = _ms(queue_ttl_s) if queue_ttl_s > 0 else 0
        reply = self._run("acquire", key, holder, capacity, _ms(ttl_s), queue_ms)
        return _grant(reply)

    async def atry_acquire(
        self, key: str, capacity: int, holder: str, ttl_s: float, queue_ttl_s: float = 0.0
    ) -> Grant:
        queue_ms = _ms(queue_ttl_s) if queue_ttl_s > 0 else 0
        reply = await self._arun("acquire", key, holder, capacity, _ms(ttl_s), queue_ms)
        return _grant(reply)

    def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        return bool(self._run("renew", key, holder, _ms(ttl_s)))

    async def arenew(self, key: str, holder: str, ttl_s: float) -> bool:
        return bool(await self._arun("renew", key, holder, _ms(ttl_s)))

    def release(self, key: str, holder: str) -> bool:
        return bool(self._run("release", key, holder))

    async def arelease(self, key: str, holder: str) -> bool:
        return bool(await self._arun("release", key, holder))

    def occupancy(self, key: str) -> tuple[int, int]:
        held, waiting = self._run("occupancy", key, "")
        return int(held), int(waiting)

    def close(self) -> None:
        """Close the sync client; clients of other event loops are dropped with their loops."""
        self._client.close()

    async def aclose(self) -> None:
        """Close this event loop's client."""
        with self._lock:
            scripts = self._loops.pop(asyncio.get_running_loop(), None)
        if scripts is not None:
            await scripts["client"].aclose()
