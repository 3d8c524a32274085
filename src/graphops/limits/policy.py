"""The limit policies: small immutable value objects, checked as they are made.

* :class:`RequestLimit` — runs per user, tenant, IP or API key, in one or more
  windows at once (``"10/minute;500/day"``, parsed by the ``limits`` library).
  The algorithm is the *moving window*: a run is admitted when fewer than
  ``amount`` runs were admitted in the last ``window`` seconds, exactly, at any
  instant. The sliding-window counter costs two integers per key instead of up
  to ``amount`` timestamps, but weighs the previous window as if its runs were
  spread evenly, so a burst at a window's edge admits more than the limit in
  some true window; request limits are small numbers, so exactness is cheap.
* :class:`TokenQuota` — tokens per user or tenant per UTC calendar day or
  month. At admission a run reserves an estimate; as it closes the reservation
  is settled with the tokens its LLM calls really used.

* :class:`Bulkhead` — at most ``slots`` runs in flight per tenant (or user) at
  once, each holding a leased slot from admission to close; more wait in that
  tenant's own fair queue, so one tenant's flood never takes another's slots.

``fail`` says what a limit does when its store cannot answer in time (Redis
down or slow): ``"open"`` admits the run unchecked, ``"closed"`` refuses it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from limits import RateLimitItem, parse_many

from graphops.errors import ConfigurationError

__all__ = [
    "Bulkhead",
    "FailMode",
    "QuotaSubject",
    "QuotaWindow",
    "RequestLimit",
    "Subject",
    "TokenQuota",
]

Subject = Literal["user", "tenant", "ip", "api_key"]
"""Who a request limit counts: the run's identity field it keys by."""
QuotaSubject = Literal["user", "tenant"]
QuotaWindow = Literal["day", "month"]
FailMode = Literal["open", "closed"]


def _one_of(owner: str, name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigurationError(f"{owner}.{name} is {value!r}: use one of {choices}")


@dataclass(frozen=True, slots=True)
class RequestLimit:
    """At most so many runs per ``per`` in each window of ``rate``.

    ``RequestLimit("user", "10/minute;500/day")``: ten a minute and 500 a day,
    each window counted separately; a run must fit all of them. Runs whose
    identity has no ``per`` (no user named, say) are not counted by this limit.
    """

    per: Subject
    rate: str
    fail: FailMode = "open"
    items: tuple[RateLimitItem, ...] = field(init=False, repr=False, compare=False)
    _windows: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _one_of("RequestLimit", "per", self.per, get_args(Subject))
        _one_of("RequestLimit", "fail", self.fail, get_args(FailMode))
        if not isinstance(self.rate, str) or not self.rate.strip():
            raise ConfigurationError(
                f"RequestLimit.rate is {self.rate!r}: write it like '10/minute;500/day'"
            )
        try:
            items = tuple(parse_many(self.rate))
        except ValueError:
            raise ConfigurationError(
                f"RequestLimit.rate {self.rate!r} is not a rate: write it like "
                "'10/minute', '500 per day' or '10/minute;500/day'"
            ) from None
        for item in items:
            if item.amount < 1:
                raise ConfigurationError(
                    f"RequestLimit.rate {self.rate!r}: {item} admits nothing; "
                    "every amount must be at least 1"
                )
        object.__setattr__(self, "items", items)
        windows = tuple((item.amount, item.get_expiry()) for item in items)
        object.__setattr__(self, "_windows", windows)

    def windows(self) -> tuple[tuple[int, int], ...]:
        """``(amount, window seconds)`` of each part of the rate."""
        return self._windows


@dataclass(frozen=True, slots=True)
class TokenQuota:
    """At most ``tokens`` LLM tokens (input and output) per ``per`` per UTC ``window``.

    ``TokenQuota("user", 100_000)``: the seed's 100k tokens a day per user; the
    day starts at 00:00 UTC, a month on its first day.
    """

    per: QuotaSubject
    tokens: int
    window: QuotaWindow = "day"
    fail: FailMode = "closed"

    def __post_init__(self) -> None:
        _one_of("TokenQuota", "per", self.per, get_args(QuotaSubject))
        _one_of("TokenQuota", "window", self.window, get_args(QuotaWindow))
        _one_of("TokenQuota", "fail", self.fail, get_args(FailMode))
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise ConfigurationError(
                f"TokenQuota.tokens is {self.tokens!r}: give a whole number of tokens, at least 1"
            )

    def period(self, now: float) -> tuple[str, float]:
        """The window ``now`` falls in: its label (``20261201``, ``202612``) and its end."""
        return _period(self.window, int(now // 86400))


@functools.lru_cache(maxsize=64)
def _period(window: QuotaWindow, day: int) -> tuple[str, float]:
    """The period of UTC day number ``day`` (days since the epoch): computed once per day."""
    start = datetime.fromtimestamp(day * 86400, UTC)
    if window == "day":
        return start.strftime("%Y%m%d"), (day + 1) * 86400.0
    first = start.replace(day=1)
    after = first.replace(year=first.year + 1, month=1) if first.month == 12 else None
    end = (after or first.replace(month=first.month + 1)).timestamp()
    return first.strftime("%Y%m"), end


@dataclass(frozen=True, slots=True)
class Bulkhead:
    """At most ``slots`` runs in flight per ``per`` at once; more wait, then are refused.

    A run takes a slot at admission and gives it back as it closes. A slot is a
    lease of ``ttl_s`` seconds, renewed while the run goes on, so a killed
    process's slots come back within ``ttl_s``. A run that finds its tenant's
    slots taken waits in that tenant's queue, first come first served, for at
    most ``wait_s`` (never past the run's deadline), then is refused
    (``bulkhead_full``) with a retry-after. Runs without the ``per`` are not held.
    """

    slots: int
    per: QuotaSubject = "tenant"
    wait_s: float = 10.0
    ttl_s: float = 30.0
    fail: FailMode = "open"

    def __post_init__(self) -> None:
        _one_of("Bulkhead", "per", self.per, get_args(QuotaSubject))
        _one_of("Bulkhead", "fail", self.fail, get_args(FailMode))
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise ConfigurationError(
                f"Bulkhead.slots is {self.slots!r}: give a whole number of runs, at least 1"
            )
        for name in ("wait_s", "ttl_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(
                    f"Bulkhead.{name} is {value!r}: give a number of seconds, 0 or more"
                )
        if self.ttl_s <= 0:
            raise ConfigurationError(f"Bulkhead.ttl_s is {self.ttl_s!r}: give seconds above 0")
