"""The guard's policy from settings and an optional YAML file.

The CLI and the reference graph build their :class:`~graphops.policies.GuardPolicy`
here, so the same limits apply wherever they run: ``GRAPHOPS_MAX_INPUT_BYTES``,
``GRAPHOPS_LIMITS_FILE`` (the limits, below), ``GRAPHOPS_REDIS_URL`` (count them
in Redis instead of this process's memory) and ``GRAPHOPS_LIMITS_TIMEOUT`` (how
long one decision may wait for Redis). The file::

    token_estimate: 20000          # tokens reserved per run beyond the question's
    requests:
      - {per: user, rate: "10/minute;500/day"}          # fail: open (the default)
      - {per: ip, rate: "100/minute", fail: closed}
    quotas:
      - {per: user, tokens: 100000, window: day}        # fail: closed (the default)
    bulkhead: {slots: 4, per: tenant, wait_s: 10}       # runs in flight per tenant
    llm_in_flight: {openai: 8, google_genai: 4}         # LLM calls in flight per provider

Every mistake (an unknown key, a malformed rate, a negative quota) is a
:class:`~graphops.errors.ConfigurationError` naming the file and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from langchain_core.language_models import BaseChatModel

from graphops.errors import ConfigurationError
from graphops.limits.policy import Bulkhead, RequestLimit, TokenQuota
from graphops.limits.store import LimitStore
from graphops.policies import GuardPolicy
from graphops.settings import Settings

__all__ = ["guard_policy", "limit_store", "limited_chat", "llm_in_flight", "read_limits_file"]

# the YAML keys of each policy

_TOP = {"token_estimate", "requests", "quotas", "max_input_bytes", "bulkhead", "llm_in_flight"}
_BULKHEAD = {"slots", "per", "wait_s", "ttl_s", "fail"}
_REQUEST = {"per", "rate", "fail"}
_QUOTA = {"per", "tokens", "window", "fail"}


def read_limits_file(path: Path) -> dict[str, Any]:
    """The file's limits as :class:`GuardPolicy` keyword arguments."""
    data = _read(path)
    data.pop("llm_in_flight", None)
    return data


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read GRAPHOPS_LIMITS_FILE {path}: {exc.strerror or exc}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"GRAPHOPS_LIMITS_FILE {path} is not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the limits file holds a mapping, not {data!r}")
    _known(path, "the file", data, _TOP)
    out: dict[str, Any] = {}
    if "token_estimate" in data:
        out["token_estimate"] = data["token_estimate"]
    if "max_input_bytes" in data:
        out["max_input_bytes"] = data["max_input_bytes"]
    out["requests"] = tuple(
        _made(path, f"requests[{i}]", RequestLimit, entry, _REQUEST)
        for i, entry in enumerate(_listed(path, "requests", data.get("requests")))
    )
    out["quotas"] = tuple(
        _made(path, f"quotas[{i}]", TokenQuota, entry, _QUOTA)
        for i, entry in enumerate(_listed(path, "quotas", data.get("quotas")))
    )
    if data.get("bulkhead") is not None:
        out["bulkhead"] = _made(path, "bulkhead", Bulkhead, data["bulkhead"], _BULKHEAD)
    out["llm_in_flight"] = _in_flight(path, data.get("llm_in_flight"))
    return out


def _in_flight(path: Path, value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{path}: llm_in_flight maps providers to calls, like {{openai: 8}}, not {value!r}"
        )
    for provider, count in value.items():
        if not isinstance(provider, str) or not provider:
            raise ConfigurationError(f"{path}: llm_in_flight: {provider!r} is not a provider")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(
                f"{path}: llm_in_flight.{provider} is {count!r}: give a whole number, at least 1"
            )
    return dict(value)


def llm_in_flight(settings: Settings) -> dict[str, int]:
    """Calls in flight allowed per provider (``ls_provider`` name), from the limits file."""
    if settings.limits_file is None:
        return {}
    limits: dict[str, int] = _read(settings.limits_file)["llm_in_flight"]
    return limits


def limited_chat(settings: Settings, chat: BaseChatModel) -> BaseChatModel:
    """``chat`` with its provider's in-flight limit, if the limits file sets one.

    The slots are in ``GRAPHOPS_REDIS_URL``'s Redis (shared by every process), else
    in this process's memory (shared by every limited model of the provider).
    """
    limits = llm_in_flight(settings)
    provider = chat._get_ls_params().get("ls_provider")
    if provider not in limits:
        return chat
    from graphops.models.limited import limit_concurrency

    slots = None
    if settings.redis_url:
        from graphops.limits.slots import Slots
        from graphops.limits.slots_redis import RedisSlotStore

        slots = Slots(RedisSlotStore.from_url(settings.redis_url, timeout=settings.limits_timeout))
    return limit_concurrency(chat, limits[provider], provider=provider, slots=slots)


def _listed(path: Path, name: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigurationError(f"{path}: {name} holds a list, not {value!r}")
    return value


def _known(path: Path, where: str, entry: dict[str, Any], keys: set[str]) -> None:
    unknown = sorted(set(entry) - keys)
    if unknown:
        raise ConfigurationError(
            f"{path}: {where} has unknown keys {unknown}; known: {sorted(keys)}"
        )


def _made(path: Path, where: str, kind: Any, entry: Any, keys: set[str]) -> Any:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{path}: {where} holds a mapping, not {entry!r}")
    _known(path, where, entry, keys)
    try:
        return kind(**entry)
    except TypeError as exc:  # a required key is missing
        raise ConfigurationError(f"{path}: {where}: {exc}") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {where}: {exc}") from None


def limit_store(settings: Settings) -> LimitStore | None:
    """Redis when ``GRAPHOPS_REDIS_URL`` is set, else None (the policy's own memory)."""
    if not settings.redis_url:
        return None
    from graphops.limits.redis import RedisLimitStore

    return RedisLimitStore.from_url(settings.redis_url, timeout=settings.limits_timeout)


def guard_policy(settings: Settings, *, token_estimate: int | None = None) -> GuardPolicy:
    """The guard as the settings (and their limits file) configure it.

    ``token_estimate`` is the graph's per-run ceiling, used when the file sets none.
    """
    options: dict[str, Any] = {"max_input_bytes": settings.max_input_bytes}
    if token_estimate is not None:
        options["token_estimate"] = token_estimate
    if settings.limits_file is not None:
        options.update(read_limits_file(settings.limits_file))
    if options.get("requests") or options.get("quotas"):
        options["store"] = limit_store(settings)
    if options.get("bulkhead") is not None and settings.redis_url:
        from graphops.limits.slots_redis import RedisSlotStore

        options["slot_store"] = RedisSlotStore.from_url(
            settings.redis_url, timeout=settings.limits_timeout
        )
    try:
        return GuardPolicy(**options)
    except ConfigurationError as exc:
        where = settings.limits_file or "the settings"
        raise ConfigurationError(f"{where}: {exc}") from None
