"""The Redis limit store: one Redis shared by every process, one script per decision.

A run's admission is one Lua script (registered once, then sent by its SHA with
``EVALSHA``) that checks every moving window and every token quota of the run
and, only if all of them have room, counts it in all of them. A script runs on
Redis without anything else running between its commands, so a decision is
atomic across all of a run's limits, whichever process asks: two processes can
never both take the last slot, and a refusal by the tenant's limit leaves the
user's count untouched. It is also one round trip, whatever the number of limits.

The keys hold what :class:`~graphops.limits.memory.MemoryLimitStore` holds: a
moving window is a list of admission times, newest first, trimmed to ``amount``
entries (the layout of the ``limits`` library's moving window), forgotten one
window after its last admission; a quota is an integer, forgotten a day after
its window ends (:data:`QUOTA_GRACE_S`), so a run that settles late still lands.
Times are the caller's epoch seconds, sent as text at full precision; Redis's
own clock only expires keys. A quota read during that grace shows its old total
where the memory store shows 0; the limiter never asks, as a new window is a new key.

Every call has one timeout (to connect, and for each read and write; 50 ms by
default) and no client-side retry (redis-py 8.1 by default retries ten times, with
backoff), so a Redis that is down or stalled costs about one timeout per
decision and never hangs a run; any error from Redis becomes
:class:`~graphops.limits.store.StoreUnavailable`, which the limiter maps to each
limit's fail mode. A decision that timed out may still be counted: its script
was sent, and runs when Redis catches up.

Needs Redis 7.0 or newer (``PEXPIREAT … GT``). Redis Cluster is not supported: a
script may only touch keys of one hash slot, and a run's keys (its user's,
tenant's, IP's and quota's) hash to different slots; putting them all under one
hash tag would put every limit on one shard anyway. Use a single Redis primary
(a failover to an asynchronous replica can lose the last moments' counts).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisError
from redis.retry import Retry

from graphops.errors import ConfigurationError
from graphops.limits.store import QuotaCheck, RateCheck, StoreUnavailable, Verdict

__all__ = ["QUOTA_GRACE_S", "RedisLimitStore"]

QUOTA_GRACE_S = 86400
"""How long a quota key outlives its window, so late settlements still land."""

_ADMIT = """
-- KEYS: the rate keys, then the quota keys.
-- ARGV[1]: now. ARGV[2], words apart: the number of rate keys, amount and window_s of
--   each rate key, then limit, reserve and expire-at (epoch ms) of each quota key.
-- Returns {admitted, per rate: '' or the oldest time that fills it, per quota: its total}.
local now = tonumber(ARGV[1])
local v = {}
for word in string.gmatch(ARGV[2], '%S+') do
  v[#v + 1] = word
end
local n = tonumber(v[1])
local m = #KEYS - n
local out = {0}
local refused = false
for i = 1, n do
  local oldest = redis.call('LINDEX', KEYS[i], tonumber(v[2 * i]) - 1)
  if oldest and tonumber(oldest) > now - tonumber(v[2 * i + 1]) then
    out[i + 1] = oldest
    refused = true
  else
    out[i + 1] = ''
  end
end
local base = 2 * n + 1
for j = 1, m do
  local total = tonumber(redis.call('GET', KEYS[n + j]) or '0')
  out[n + j + 1] = total
  if total + tonumber(v[base + 3 * j - 1]) > tonumber(v[base + 3 * j - 2]) then
    refused = true
  end
end
if refused then
  return out
end
for i = 1, n do
  if redis.call('LPUSH', KEYS[i], ARGV[1]) > tonumber(v[2 * i]) then
    redis.call('LTRIM', KEYS[i], 0, tonumber(v[2 * i]) - 1)
  end
  redis.call('PEXPIRE', KEYS[i], tonumber(v[2 * i + 1]) * 1000)
end
for j = 1, m do
  local key = KEYS[n + j]
  local ttl = redis.call('PTTL', key)
  out[n + j + 1] = redis.call('INCRBY', key, v[base + 3 * j - 1])
  if ttl < 0 then
    redis.call('PEXPIREAT', key, v[base + 3 * j])
  else
    redis.call('PEXPIREAT', key, v[base + 3 * j], 'GT')
  end
end
out[1] = 1
return out
"""

_SETTLE = """
-- KEYS[1]: the quota key. ARGV: delta, expire-at (epoch ms). Returns the new total.
local ttl = redis.call('PTTL', KEYS[1])
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  total = 0
end
if ttl < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
end
return total
"""

_PASSWORD = re.compile(r"(://[^/@]*?:)[^/@]*@")


def _redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


def _expire_at_ms(reset_at: float) -> str:
    return str(math.ceil((reset_at + QUOTA_GRACE_S) * 1000))


def _admit_args(
    rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
) -> tuple[list[str], list[str]]:
    """The script's keys and its two arguments: few arguments, as redis-py packs each slowly."""
    words = [str(len(rates))]
    for rate in rates:
        words += (str(rate.amount), str(rate.window_s))
    for quota in quotas:
        words += (str(quota.limit), str(quota.reserve), _expire_at_ms(quota.reset_at))
    keys = [r.key for r in rates] + [q.key for q in quotas]
    return keys, [repr(float(now)), " ".join(words)]


def _verdict(
    reply: Sequence[Any], rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
) -> Verdict:
    """The script's reply as the memory store would have answered: the same arithmetic."""
    admitted = int(reply[0]) == 1
    oldest = reply[1 : 1 + len(rates)]
    used = tuple(int(total) for total in reply[1 + len(rates) :])
    waits = [float(t) + r.window_s - now if t else 0.0 for t, r in zip(oldest, rates, strict=True)]
    if admitted:
        waits += [0.0] * len(quotas)
    else:
        waits += [
            q.reset_at - now if total + q.reserve > q.limit else 0.0
            for q, total in zip(quotas, used, strict=True)
        ]
    return Verdict(admitted, tuple(waits), used)


@dataclass(slots=True)
class _AsyncSide:
    """The asyncio client of one event loop, and the scripts registered on it."""

    client: redis.asyncio.Redis
    admit: AsyncScript
    settle: AsyncScript


class RedisLimitStore:
    """A :class:`~graphops.limits.store.LimitStore` in one Redis, shared by every process.

    Usually made with :meth:`from_url`. Given clients are used as they are (set
    their timeouts and retries yourself) and closed by :meth:`close` and
    :meth:`aclose`. ``async_client`` makes one asyncio client and is called once
    per event loop that uses the store (redis-py's asyncio connections belong to
    the loop they were opened on); without it, the async methods run the sync
    client in a worker thread. ``label`` names the server in error messages.
    """

    remote = True

    def __init__(
        self,
        client: redis.Redis,
        async_client: Callable[[], redis.asyncio.Redis] | None = None,
        *,
        label: str | None = None,
    ) -> None:
        self._client = client
        self._async_client = async_client
        self.label = label if label is not None else _label_of(client)
        self._admit: Script = client.register_script(_ADMIT)
        self._settle: Script = client.register_script(_SETTLE)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncSide] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.05) -> RedisLimitStore:
        """A store on the Redis at ``url`` (``redis://[:password@]host:6379/0``, ``rediss://``,
        ``unix://``): ``timeout`` seconds to connect and for each read and write, no retry.

        Nothing connects yet: the first decision does.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigurationError(
                f"RedisLimitStore timeout is {timeout!r}: give seconds as a number, like 0.05"
            )
        if not math.isfinite(timeout) or timeout <= 0:
            raise ConfigurationError(
                f"RedisLimitStore timeout is {timeout!r}: give seconds greater than 0, like 0.05"
            )
        if not isinstance(url, str):
            raise ConfigurationError(
                f"RedisLimitStore URL is {url!r}: write it like redis://localhost:6379/0"
            )
        label = _redacted(url)
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        try:
            _check_url(url)
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        except ValueError as exc:
            raise ConfigurationError(
                f"RedisLimitStore URL {label!r} is not a Redis URL ({exc}): write it like "
                "redis://localhost:6379/0, rediss://:password@host:6380/0 or "
                "unix:///run/redis.sock?db=0"
            ) from None

        def async_client() -> redis.asyncio.Redis:
            return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)

        return cls(client, async_client, label=label)

    # ---------------------------------------------------------------- admission
    def admit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        if not rates and not quotas:
            return Verdict(True, ())
        keys, args = _admit_args(rates, quotas, now)
        try:
            reply = self._admit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return _verdict(reply, rates, quotas, now)

    async def aadmit(
        self, rates: Sequence[RateCheck], quotas: Sequence[QuotaCheck], now: float
    ) -> Verdict:
        if not rates and not quotas:
            return Verdict(True, ())
        side = self._side()
        if side is None:
            return await anyio.to_thread.run_sync(self.admit, rates, quotas, now)
        keys, args = _admit_args(rates, quotas, now)
        try:
            reply = await side.admit(keys=keys, args=args, client=side.client)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return _verdict(reply, rates, quotas, now)

    # ---------------------------------------------------------------- settlement
    def settle(self, key: str, delta: int, reset_at: float) -> int:
        try:
            total = self._settle(keys=[key], args=[str(delta), _expire_at_ms(reset_at)])
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return int(total)

    async def asettle(self, key: str, delta: int, reset_at: float) -> int:
        side = self._side()
        if side is None:
            return await anyio.to_thread.run_sync(self.settle, key, delta, reset_at)
        args = [str(delta), _expire_at_ms(reset_at)]
        try:
            total = await side.settle(keys=[key], args=args, client=side.client)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return int(total)

    # ---------------------------------------------------------------- show and reset
    def usage(
        self, rates: Sequence[RateCheck], quota_keys: Sequence[str], now: float
    ) -> tuple[int, ...]:
        if not rates and not quota_keys:
            return ()
        pipe = self._client.pipeline(transaction=False)
        for rate in rates:
            pipe.lrange(rate.key, 0, rate.amount - 1)
        for key in quota_keys:
            pipe.get(key)
        try:
            replies = pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        counts = [
            sum(1 for t in times if float(t) > now - rate.window_s)
            for rate, times in zip(rates, replies, strict=False)
        ]
        counts += [int(total or 0) for total in replies[len(rates) :]]
        return tuple(counts)

    def reset(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        try:
            return self._client.delete(*keys)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close the sync client's connections and forget every loop's asyncio client.

        Asyncio connections can only be closed in their own loop: call :meth:`aclose`
        there first, or they are closed as they are garbage collected.
        """
        self._client.close()
        with self._loops_lock:
            self._loops.clear()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (if it has one)."""
        loop = asyncio.get_running_loop()
        with self._loops_lock:
            side = self._loops.pop(loop, None)
        if side is not None:
            await side.client.aclose()

    # ---------------------------------------------------------------- helpers
    def _side(self) -> _AsyncSide | None:
        """The running loop's asyncio client; None without a factory or outside asyncio."""
        if self._async_client is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): use the sync client in a thread
            return None
        with self._loops_lock:
            side = self._loops.get(loop)
            if side is None:
                for stale in [other for other in self._loops if other.is_closed()]:
                    del self._loops[stale]
                client = self._async_client()
                side = _AsyncSide(
                    client, client.register_script(_ADMIT), client.register_script(_SETTLE)
                )
                self._loops[loop] = side
            return side

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = str(exc) or type(exc).__name__
        return StoreUnavailable(f"Redis at {self.label}: {detail}")


def _check_url(url: str) -> None:
    """Raise ValueError for what redis-py would only find at the first connection."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("the scheme must be redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
        return
    if not parts.hostname:
        raise ValueError("no host")
    _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the path /{db} is not a database number")


def _label_of(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"
