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

``fail`` says what a limit does when its store cannot answer in time (Redis
down or slow): ``"open"`` admits the run unchecked, ``"closed"`` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from limits import RateLimitItem, parse_many

from graphops.errors import ConfigurationError

__all__ = ["FailMode", "QuotaSubject", "QuotaWindow", "RequestLimit", "Subject", "TokenQuota"]

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

    def windows(self) -> tuple[tuple[int, int], ...]:
        """``(amount, window seconds)`` of each part of the rate."""
        return tuple((item.amount, item.get_expiry()) for item in self.items)


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
        moment = datetime.fromtimestamp(now, UTC)
        if self.window == "day":
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            label = start.strftime("%Y%m%d")
            end = start.timestamp() + 86400
        else:
            start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            label = start.strftime("%Y%m")
            year, month = (
                (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
            )
            end = start.replace(year=year, month=month).timestamp()
        return label, end
