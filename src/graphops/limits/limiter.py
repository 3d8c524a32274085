"""The limiter: a run's identity and estimate in, one admission decision out.

It turns the policies into the checks a store counts (one key per limit, per
window, per user/tenant/IP/key), asks the store once for all of them, and says
what a refusal needs for a friendly answer and for HTTP's ``Retry-After`` and
``RateLimit-*`` headers: the reason, when to retry, and which limit. At the
run's close it settles each token reservation with the tokens really used.

When the store cannot answer (:class:`~graphops.limits.store.StoreUnavailable`:
Redis down, or slower than its timeout), the run is refused if any limit that
applies to it fails closed, else admitted unchecked; the decision says which.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from graphops.limits.deferred import Deferred
from graphops.limits.memory import MemoryLimitStore
from graphops.limits.policy import RequestLimit, TokenQuota
from graphops.limits.store import LimitStore, QuotaCheck, RateCheck, StoreUnavailable, Verdict
from graphops.runtime.scope import Identity

__all__ = ["Admission", "Limiter", "Reason", "Reservation"]

Reason = Literal["rate_limited", "quota_exceeded", "limiter_unavailable"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens reserved under one quota key until ``reset_at``."""

    key: str
    tokens: int
    reset_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's decision for one run.

    ``limit`` describes the limit that refused (the one that frees last), with
    what a ``RateLimit`` header needs: ``kind`` (``requests`` or ``tokens``),
    ``per``, ``amount``, ``window_s``, ``remaining`` and ``reset_s``.
    ``unchecked`` is set when the store could not answer and the run was
    admitted because every limit that applies to it fails open.
    """

    allowed: bool
    reason: Reason | None = None
    message: str | None = None
    retry_after_s: float | None = None
    limit: Mapping[str, Any] | None = None
    reservations: tuple[Reservation, ...] = ()
    unchecked: bool = False


@dataclass(frozen=True, slots=True)
class _Checks:
    rates: list[RateCheck] = field(default_factory=list)
    rate_of: list[tuple[RequestLimit, int]] = field(default_factory=list)  # policy, item index
    quotas: list[QuotaCheck] = field(default_factory=list)
    quota_of: list[TokenQuota] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rates and not self.quotas


_PLAIN = re.compile(r"[A-Za-z0-9_.@-]+")


def _quoted(who: str) -> str:
    """``who`` as a key part: itself when plain, else percent-quoted (no ``:`` can forge a key)."""
    return who if _PLAIN.fullmatch(who) else quote(who, safe="")


def _subject_id(identity: Identity, per: str) -> str | None:
    return identity.api_key_id if per == "api_key" else getattr(identity, per)


class Limiter:
    """Request limits and token quotas over one :class:`LimitStore` (memory by default).

    ``clock`` gives epoch seconds (inject one in tests); ``prefix`` starts every
    key, so several deployments can share one Redis; ``unavailable_retry_s`` is
    the retry-after of a run refused because the store could not answer.
    """

    def __init__(
        self,
        requests: Sequence[RequestLimit] = (),
        quotas: Sequence[TokenQuota] = (),
        *,
        store: LimitStore | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "graphops:",
        unavailable_retry_s: float = 1.0,
    ) -> None:
        self.requests = tuple(requests)
        self.quotas = tuple(quotas)
        self.store: LimitStore = store if store is not None else MemoryLimitStore()
        self.clock = clock
        self.prefix = prefix
        self.unavailable_retry_s = unavailable_retry_s
        self._deferred = Deferred()
        self._rate_parts = [
            (limit, i, f"{prefix}rate:{limit.per}:", amount, window, f":{amount}/{window}")
            for limit in self.requests
            for i, (amount, window) in enumerate(limit.windows())
        ]
        self._quota_parts = [(quota, f"{prefix}quota:{quota.per}:") for quota in self.quotas]

    @property
    def active(self) -> bool:
        """Whether there is anything to check."""
        return bool(self.requests or self.quotas)

    # ---------------------------------------------------------------- keys
    def _checks(self, identity: Identity, tokens: int, now: float) -> _Checks:
        # the hot path of every admission: keys built from parts made once, in __init__
        checks = _Checks()
        for limit, index, head, amount, window, tail in self._rate_parts:
            who = _subject_id(identity, limit.per)
            if who is not None:
                checks.rates.append(RateCheck(f"{head}{_quoted(who)}{tail}", amount, window))
                checks.rate_of.append((limit, index))
        for quota, head in self._quota_parts:
            who = _subject_id(identity, quota.per)
            if who is not None:
                label, reset_at = quota.period(now)
                key = f"{head}{_quoted(who)}:{quota.window}:{label}"
                checks.quotas.append(QuotaCheck(key, quota.tokens, tokens, reset_at))
                checks.quota_of.append(quota)
        return checks

    # ---------------------------------------------------------------- admission
    def admit(self, identity: Identity, tokens: int = 0) -> Admission:
        """Admit a run of ``identity`` reserving ``tokens`` under each quota, or refuse it."""
        now, checks, early = self._prepared(identity, tokens)
        if early is not None:
            return early
        try:
            verdict = self.store.admit(checks.rates, checks.quotas, now)
        except StoreUnavailable as exc:
            return self._unavailable(checks, exc)
        return self._decided(checks, verdict)

    async def aadmit(self, identity: Identity, tokens: int = 0) -> Admission:
        """:meth:`admit`, without blocking the event loop."""
        now, checks, early = self._prepared(identity, tokens)
        if early is not None:
            return early
        try:
            verdict = await self.store.aadmit(checks.rates, checks.quotas, now)
        except StoreUnavailable as exc:
            return self._unavailable(checks, exc)
        return self._decided(checks, verdict)

    def _prepared(self, identity: Identity, tokens: int) -> tuple[float, _Checks, Admission | None]:
        """The time, the checks, and the decision if the store need not be asked."""
        now = self.clock()
        checks = self._checks(identity, tokens, now)
        return now, checks, self._before_store(checks, tokens)

    def _before_store(self, checks: _Checks, tokens: int) -> Admission | None:
        if checks.empty:
            return Admission(True)
        for quota in checks.quota_of:
            if tokens > quota.tokens:
                return Admission(
                    False,
                    "quota_exceeded",
                    f"this run would reserve {tokens} tokens, more than the whole "
                    f"{quota.per} quota of {quota.tokens} a {quota.window}",
                    None,
                    _quota_limit(quota, 0, None),
                )
        return None

    def _decided(self, checks: _Checks, verdict: Verdict) -> Admission:
        n_rates = len(checks.rates)
        if verdict.admitted:
            reservations = tuple(
                Reservation(q.key, q.reserve, q.reset_at) for q in checks.quotas if q.reserve
            )
            return Admission(True, reservations=reservations)
        worst = max(range(len(verdict.waits)), key=lambda i: verdict.waits[i])
        wait = _seconds(verdict.waits[worst])
        if worst < n_rates:
            limit, index = checks.rate_of[worst]
            amount, window = limit.windows()[index]
            return Admission(
                False,
                "rate_limited",
                f"too many requests for this {limit.per}: {limit.items[index]}; "
                f"retry in {wait:g} s",
                wait,
                {
                    "kind": "requests",
                    "per": limit.per,
                    "amount": amount,
                    "window_s": window,
                    "rate": limit.rate,
                    "remaining": 0,
                    "reset_s": wait,
                },
            )
        quota = checks.quota_of[worst - n_rates]
        used = verdict.used[worst - n_rates] if verdict.used else quota.tokens
        check = checks.quotas[worst - n_rates]
        return Admission(
            False,
            "quota_exceeded",
            f"the {quota.per}'s token quota of {quota.tokens} a {quota.window} leaves "
            f"{max(quota.tokens - used, 0)} tokens, fewer than this run reserves "
            f"({check.reserve}); it resets in {wait:g} s",
            wait,
            _quota_limit(quota, max(quota.tokens - used, 0), wait),
        )

    def _unavailable(self, checks: _Checks, exc: StoreUnavailable) -> Admission:
        policies: list[RequestLimit | TokenQuota] = [p for p, _ in checks.rate_of]
        policies += checks.quota_of
        closed = next((p for p in policies if p.fail == "closed"), None)
        if closed is None:
            return Admission(True, message=f"limits unchecked: {exc}", unchecked=True)
        kind = "requests" if isinstance(closed, RequestLimit) else "tokens"
        return Admission(
            False,
            "limiter_unavailable",
            f"the limit store did not answer ({exc}) and the {closed.per} {kind} limit "
            "fails closed",
            self.unavailable_retry_s,
            {"kind": kind, "per": closed.per, "fail": "closed"},
        )

    # ---------------------------------------------------------------- settlement
    def settle(self, admission: Admission, used_tokens: int) -> tuple[int, ...]:
        """Charge or refund each reservation to ``used_tokens``; each quota's new total."""
        return tuple(
            self.store.settle(r.key, used_tokens - r.tokens, r.reset_at)
            for r in admission.reservations
        )

    async def asettle(self, admission: Admission, used_tokens: int) -> tuple[int, ...]:
        """:meth:`settle`, without blocking the event loop."""
        return tuple(
            [
                await self.store.asettle(r.key, used_tokens - r.tokens, r.reset_at)
                for r in admission.reservations
            ]
        )

    def settle_soon(self, admission: Admission, used_tokens: int) -> None:
        """:meth:`settle` from sync code: at once, or as a task when inside an event loop.

        A run's scope closes in a sync callback even in an async run; a remote
        store must not be called from there, so the settlement is sent as a task
        of the running loop (:meth:`drain` waits for those still in flight). A
        failed settlement is logged: the reservation then stands, which errs on
        the side of the quota.
        """
        if admission.reservations:
            self._deferred.call(
                self.store.remote,
                lambda: self.settle(admission, used_tokens),
                lambda: self.asettle(admission, used_tokens),
                "quota settlement failed: the reservation stands",
            )

    async def drain(self) -> None:
        """Wait for the settlements :meth:`settle_soon` sent as tasks of this loop."""
        await self._deferred.drain()

    # ---------------------------------------------------------------- show and reset
    def _checks_of(self, per: str, who: str, now: float) -> _Checks:
        """The checks of every limit that counts ``per`` ``who``: the keys admission uses."""
        names: dict[str, Any] = {"api_key_id" if per == "api_key" else per: who}
        identity = Identity(**names)
        return self._checks(identity, 0, now)

    def usage(self, per: str, who: str) -> list[dict[str, Any]]:
        """Every limit that counts ``per`` ``who``: what is used and what is left, now."""
        now = self.clock()
        checks = self._checks_of(per, who, now)
        counts = self.store.usage(checks.rates, [q.key for q in checks.quotas], now)
        rows: list[dict[str, Any]] = []
        for (limit, i), check, used in zip(checks.rate_of, checks.rates, counts, strict=False):
            rows.append(
                {
                    "kind": "requests",
                    "limit": str(limit.items[i]),
                    "amount": check.amount,
                    "window_s": check.window_s,
                    "used": used,
                    "remaining": max(check.amount - used, 0),
                }
            )
        quota_counts = counts[len(checks.rates) :]
        for quota, reserved, used in zip(checks.quota_of, checks.quotas, quota_counts, strict=True):
            rows.append(
                {
                    "kind": "tokens",
                    "limit": f"{quota.tokens} per {quota.window}",
                    "amount": quota.tokens,
                    "window": quota.window,
                    "used": used,
                    "remaining": max(quota.tokens - used, 0),
                    "reset_s": _seconds(reserved.reset_at - now),
                }
            )
        return rows

    def reset(self, per: str, who: str) -> int:
        """Forget what is counted for ``per`` ``who`` (this quota window); keys that existed."""
        checks = self._checks_of(per, who, self.clock())
        return self.store.reset([c.key for c in checks.rates] + [q.key for q in checks.quotas])


def _quota_limit(quota: TokenQuota, remaining: int, reset: float | None) -> dict[str, Any]:
    return {
        "kind": "tokens",
        "per": quota.per,
        "amount": quota.tokens,
        "window": quota.window,
        "remaining": remaining,
        "reset_s": reset,
    }


def _seconds(value: float) -> float:
    """A wait rounded up to the millisecond (never 0 for a refusal that must wait)."""
    return max(math.ceil(value * 1000) / 1000, 0.001)
