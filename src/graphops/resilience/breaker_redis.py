"""The Redis breaker store: one breaker shared by every process, one Lua script per operation.

Each breaker is two keys under one hash tag (so a cluster keeps them together):

* ``{prefix}breaker:{<name>}`` — a hash: the state, its epoch, the window's
  running counts and its ring (fields ``r0`` … ``r<window-1>``: 0 ok, 1 failed,
  2 slow, 3 both), when it opened, the half-open counts, and the transition that
  began the epoch (from, reason, counts, by whom);
* ``{prefix}breaker:{<name>}:probes`` — a sorted set: the half-open probes in
  flight, scored by when they lapse.

A script runs with nothing else in between, so every decision is atomic across
processes: at most ``half_open_calls`` probes are ever out, and one process only
moves OPEN to HALF_OPEN. **Time is the Redis server's** (``TIME`` in the script),
so the hosts' clocks never matter. An epoch is at least the server's time in ms
when it began, so a breaker whose keys expired (or a restarted Redis) starts at an
epoch newer than any a process remembers.

**Round trips.** ``record`` is one script and its reply carries the state. In the
CLOSED state ``permit`` answers from the last reply for up to ``fresh_s`` (1 s)
after it came, so a steady closed breaker costs one round trip per call; in OPEN
it answers None from that reply until the earlier of ``fresh_s`` and the end of
``open_s``. HALF_OPEN is never answered from memory. The bound this gives: up to
``fresh_s`` after another process opened the breaker, a process that has not
heard yet may still let calls through as CLOSED (not as probes; their outcomes
are then dropped, as they belong to an older epoch).

**Expiry.** Each write sets the keys' TTL to ``ttl_s`` (an hour by default),
and never less than ``open_s + probe_ttl_s + 1`` seconds, so an idle breaker is
forgotten (that is, CLOSED) while an OPEN one lives through its wait and probes.

Errors: a call gets ``timeout`` seconds (connect and read, 50 ms by default),
redis-py's own retries are off, and any Redis error becomes
:class:`~graphops.limits.store.StoreUnavailable` (the breaker then falls back).
Needs Redis 5 or newer (scripts replicated by effects, as ``TIME`` requires).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisError
from redis.retry import Retry

from graphops.errors import ConfigurationError
from graphops.limits.redis import _check_url, _redacted
from graphops.limits.store import StoreUnavailable
from graphops.resilience.breaker_store import Caller, Change, Reason, Reply, State

if TYPE_CHECKING:
    from graphops.resilience.breaker import BreakerPolicy

__all__ = ["RedisBreakerStore"]

_PRELUDE = """
-- KEYS: the hash, the probes. ARGV[1]: the policy, words apart (window, min_calls,
-- failure_rate, slow_rate, open_ms, half_open_calls, probe_ms, ttl_ms); ARGV[2]: who
-- asks; ARGV[3]: the newest epoch it knows; then the operation's own arguments.
-- Every reply: {state, epoch, permitted, token, ms left of OPEN[, the last transition:
-- from, reason, calls, failed, slow, by]} (the transition only if newer than ARGV[3]).
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key, probes = KEYS[1], KEYS[2]
local p = {}
for word in string.gmatch(ARGV[1], '%S+') do p[#p + 1] = tonumber(word) end
local window, min_calls, failure_rate, slow_rate = p[1], p[2], p[3], p[4]
local open_ms, half_open, probe_ms, ttl_ms = p[5], p[6], p[7], p[8]
local who, seen = ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', key, 'st', 'gen', 'w', 'n', 'f', 's', 'i', 't',
  'hn', 'hf', 'hs', 'hg')
local v = {}
for j = 3, 12 do v[j] = tonumber(h[j]) or 0 end
local st, gen = h[1], tonumber(h[2])
local n, f, s, i, opened = v[4], v[5], v[6], v[7], v[8]
local hn, hf, hs, hg = v[9], v[10], v[11], v[12]
local dirty = false
if not gen then
  st, gen, n, f, s, i = 'closed', now, 0, 0, 0, 0
  redis.call('HSET', key, 'st', st, 'gen', gen, 'w', window, 'n', 0, 'f', 0, 's', 0, 'i', 0)
  dirty = true
elseif v[3] ~= window then
  n, f, s, i = 0, 0, 0, 0
  redis.call('HSET', key, 'w', window, 'n', 0, 'f', 0, 's', 0, 'i', 0)
  dirty = true
end
local function move(to, reason, calls, fails, slows)
  local from = st
  st, gen, dirty = to, math.max(gen + 1, now), true
  redis.call('HSET', key, 'st', to, 'gen', gen, 'lf', from, 'lr', reason,
    'lc', calls, 'lx', fails, 'ly', slows, 'lby', who)
  redis.call('DEL', probes)
  if to == 'closed' then
    n, f, s, i = 0, 0, 0, 0
    redis.call('HSET', key, 'n', 0, 'f', 0, 's', 0, 'i', 0)
  elseif to == 'open' then
    opened = now
    redis.call('HSET', key, 't', now)
  else
    hn, hf, hs, hg = 0, 0, 0, 0
    redis.call('HSET', key, 'hn', 0, 'hf', 0, 'hs', 0, 'hg', 0)
  end
end
local function reply(permitted, token)
  if dirty then redis.call('PEXPIRE', key, ttl_ms) end
  local wait = 0
  if st == 'open' then wait = math.max(opened + open_ms - now, 0) end
  local out = {st, gen, permitted, token, wait}
  if gen > seen then
    local l = redis.call('HMGET', key, 'lf', 'lr', 'lc', 'lx', 'ly', 'lby')
    if l[1] then for j = 1, 6 do out[5 + j] = l[j] end end
  end
  return out
end
"""

_PERMIT = """
if st == 'closed' then return reply(1, '') end
if st == 'open' then
  if now < opened + open_ms then return reply(0, '') end
  local l = redis.call('HMGET', key, 'lc', 'lx', 'ly')
  move('half_open', 'wait_elapsed', tonumber(l[1]) or 0, tonumber(l[2]) or 0, tonumber(l[3]) or 0)
else
  redis.call('ZREMRANGEBYSCORE', probes, '-inf', now)
end
if redis.call('ZCARD', probes) + hn >= half_open then return reply(0, '') end
hg = hg + 1
local token = string.format('%d.%d', gen, hg)
redis.call('ZADD', probes, now + probe_ms, token)
redis.call('PEXPIRE', probes, ttl_ms)
redis.call('HSET', key, 'hg', hg)
dirty = true
return reply(1, token)
"""

_RECORD = """
local epoch, token, outcome = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local failed, slow = outcome % 2, math.floor(outcome / 2)
if epoch ~= gen then return reply(0, '') end
if token == '' and st == 'closed' then
  local field = 'r' .. i
  if n == window then
    local old = tonumber(redis.call('HGET', key, field)) or 0
    f, s = f - old % 2, s - math.floor(old / 2)
  else
    n = n + 1
  end
  f, s, i = f + failed, s + slow, (i + 1) % window
  redis.call('HSET', key, field, outcome, 'n', n, 'f', f, 's', s, 'i', i)
  dirty = true
  if n >= min_calls then
    if f / n >= failure_rate then move('open', 'failure_rate', n, f, s)
    elseif s / n >= slow_rate then move('open', 'slow_rate', n, f, s) end
  end
elseif token ~= '' and st == 'half_open' then
  local lapses = redis.call('ZSCORE', probes, token)
  if lapses then
    redis.call('ZREM', probes, token)
    if tonumber(lapses) > now then
      hn, hf, hs, dirty = hn + 1, hf + failed, hs + slow, true
      redis.call('HSET', key, 'hn', hn, 'hf', hf, 'hs', hs)
      if hn >= half_open then
        if hf / hn >= failure_rate or hs / hn >= slow_rate then
          move('open', 'probes_failed', hn, hf, hs)
        else
          move('closed', 'probes_ok', hn, hf, hs)
        end
      end
    end
  end
end
return reply(0, '')
"""

_RELEASE = """
if tonumber(ARGV[4]) == gen and st == 'half_open' then redis.call('ZREM', probes, ARGV[5]) end
return reply(0, '')
"""

_STATE = "return reply(0, '')"

_RESET = "move('closed', 'reset', n, f, s)\nreturn reply(0, '')"

_SCRIPTS = {
    name: _PRELUDE + body
    for name, body in {
        "permit": _PERMIT,
        "record": _RECORD,
        "release": _RELEASE,
        "state": _STATE,
        "reset": _RESET,
    }.items()
}


def _parse(raw: list[Any]) -> tuple[Reply, int]:
    """The script's reply, and the ms left of an OPEN wait."""
    state = cast(State, raw[0].decode())
    last = None
    if len(raw) > 5:
        calls = int(raw[7])
        failure_rate, slow_rate = (int(raw[8]) / calls, int(raw[9]) / calls) if calls else (0, 0)
        reason = cast(Reason, raw[6].decode())
        last = Change(
            cast(State, raw[5].decode()), state, reason, failure_rate, slow_rate, raw[10].decode()
        )
    token = raw[3].decode() or None
    return Reply(state, int(raw[1]), raw[2] == 1, token, last), int(raw[4])


class RedisBreakerStore:
    """A :class:`~graphops.resilience.breaker_store.BreakerStore` in Redis, shared across processes.

    ``fresh_s`` bounds how long a CLOSED (or OPEN) reply answers permits without
    asking Redis (0: always ask); ``clock`` (``time.monotonic``) measures that age.
    """

    remote = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.05,
        prefix: str = "graphops:",
        ttl_s: float = 3600.0,
        fresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for what, value in (("timeout", timeout), ("ttl_s", ttl_s), ("fresh_s", fresh_s)):
            number = not isinstance(value, bool) and isinstance(value, int | float)
            if not number or not 0 <= value < math.inf or (value == 0 and what != "fresh_s"):
                least = "0 or more" if what == "fresh_s" else "above 0"
                raise ConfigurationError(
                    f"RedisBreakerStore {what} is {value!r}: give seconds, {least}"
                )
        self.label = _redacted(url) if isinstance(url, str) else repr(url)
        try:
            _check_url(url)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"RedisBreakerStore URL {self.label!r} is not a Redis URL ({exc}): write it like "
                "redis://localhost:6379/0"
            ) from None
        self.url, self.prefix, self.ttl_s, self.fresh_s = url, prefix, ttl_s, fresh_s
        self._clock = clock
        self._options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        self._client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._options)
        self._scripts: dict[str, Script] = {
            name: self._client.register_script(text) for name, text in _SCRIPTS.items()
        }
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, dict[str, AsyncScript]]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._words: dict[BreakerPolicy, str] = {}
        self._fresh: dict[str, tuple[float, Reply]] = {}

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.05, prefix: str = "graphops:"
    ) -> RedisBreakerStore:
        """A store on the Redis at ``url``: ``timeout`` seconds to connect and for each call,
        no retry. Nothing connects yet: the first call does."""
        return cls(url, timeout=timeout, prefix=prefix)

    def keys(self, name: str) -> list[str]:
        """The Redis keys of breaker ``name``: its hash and its probes."""
        base = f"{self.prefix}breaker:{{{name}}}"
        return [base, f"{base}:probes"]

    # ------------------------------------------------------------ the BreakerStore protocol
    def permit(self, caller: Caller) -> Reply:
        fresh = self._fresh.get(caller.name)
        if fresh is not None and self._clock() < fresh[0]:
            return fresh[1]
        return self._run("permit", caller)

    async def apermit(self, caller: Caller) -> Reply:
        fresh = self._fresh.get(caller.name)
        if fresh is not None and self._clock() < fresh[0]:
            return fresh[1]
        return await self._arun("permit", caller)

    def record(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        return self._run("record", caller, epoch, token or "", outcome)

    async def arecord(self, caller: Caller, epoch: int, token: str | None, outcome: int) -> Reply:
        return await self._arun("record", caller, epoch, token or "", outcome)

    def release(self, caller: Caller, epoch: int, token: str) -> Reply:
        return self._run("release", caller, epoch, token)

    async def arelease(self, caller: Caller, epoch: int, token: str) -> Reply:
        return await self._arun("release", caller, epoch, token)

    def state(self, caller: Caller) -> Reply:
        return self._run("state", caller)

    async def astate(self, caller: Caller) -> Reply:
        return await self._arun("state", caller)

    def reset(self, caller: Caller) -> Reply:
        return self._run("reset", caller)

    async def areset(self, caller: Caller) -> Reply:
        return await self._arun("reset", caller)

    def close(self) -> None:
        """Close the sync client; clients of other event loops are dropped with their loops."""
        self._client.close()

    async def aclose(self) -> None:
        """Close this event loop's client (call it before the loop ends)."""
        with self._lock:
            side = self._loops.pop(asyncio.get_running_loop(), None)
        if side is not None:
            await side[0].aclose()

    # ------------------------------------------------------------ calls
    def _args(self, caller: Caller, extra: tuple[str | int, ...]) -> list[str | int]:
        """The policy as one word list (redis-py packs each argument slowly), then the rest."""
        policy = caller.policy
        words = self._words.get(policy)
        if words is None:
            ttl = max(self.ttl_s, policy.open_s + policy.probe_ttl_s + 1.0)
            numbers = [policy.window, policy.min_calls, float(policy.failure_rate)]
            numbers += [float(policy.slow_rate), math.ceil(policy.open_s * 1000)]
            numbers += [policy.half_open_calls, math.ceil(policy.probe_ttl_s * 1000)]
            words = self._words[policy] = " ".join(map(repr, [*numbers, math.ceil(ttl * 1000)]))
        return [words, caller.who, caller.seen, *extra]

    def _run(self, op: str, caller: Caller, *extra: str | int) -> Reply:
        keys, args = self.keys(caller.name), self._args(caller, extra)
        try:
            raw = self._scripts[op](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(caller.name, exc) from exc
        return self._remember(caller.name, raw)

    async def _arun(self, op: str, caller: Caller, *extra: str | int) -> Reply:
        side = self._side()
        if side is None:  # not asyncio (trio): the sync client, in a worker thread
            return await anyio.to_thread.run_sync(lambda: self._run(op, caller, *extra))
        keys, args = self.keys(caller.name), self._args(caller, extra)
        try:
            raw = await side[1][op](keys=keys, args=args, client=side[0])
        except (RedisError, OSError) as exc:
            raise self._unavailable(caller.name, exc) from exc
        return self._remember(caller.name, raw)

    def _remember(self, name: str, raw: list[Any]) -> Reply:
        """Parse a reply and keep it to answer permits while it is fresh."""
        reply, wait_ms = _parse(raw)
        if reply.state == "half_open" or self.fresh_s == 0:
            self._fresh.pop(name, None)
            return reply
        held = self._fresh.get(name)
        if held is not None and held[1].epoch > reply.epoch:
            return reply
        now = self._clock()
        if reply.state == "closed":
            kept = (
                reply if reply.permitted else Reply("closed", reply.epoch, True, None, reply.last)
            )
            self._fresh[name] = (now + self.fresh_s, kept)
        else:
            kept = (
                reply
                if not reply.permitted
                else Reply("open", reply.epoch, False, None, reply.last)
            )
            self._fresh[name] = (now + min(self.fresh_s, wait_ms / 1000), kept)
        return reply

    def _side(self) -> tuple[redis.asyncio.Redis, dict[str, AsyncScript]] | None:
        """This event loop's client and scripts: redis.asyncio connections cannot change loops."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            side = self._loops.get(loop)
            if side is None:
                client = redis.asyncio.Redis.from_url(
                    self.url, retry=AsyncRetry(NoBackoff(), 0), **self._options
                )
                side = (client, {n: client.register_script(t) for n, t in _SCRIPTS.items()})
                self._loops[loop] = side
            return side

    def _unavailable(self, name: str, exc: BaseException) -> StoreUnavailable:
        self._fresh.pop(name, None)  # a reply kept from before must not pass for an answer
        detail = str(exc) or type(exc).__name__
        return StoreUnavailable(f"Redis at {self.label}: {detail}")
