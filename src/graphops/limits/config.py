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

Every mistake (an unknown key, a malformed rate, a negative quota) is a
:class:`~graphops.errors.ConfigurationError` naming the file and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from graphops.errors import ConfigurationError
from graphops.limits.policy import RequestLimit, TokenQuota
from graphops.limits.store import LimitStore
from graphops.policies import GuardPolicy
from graphops.settings import Settings

__all__ = ["guard_policy", "limit_store", "read_limits_file"]

_TOP = {"token_estimate", "requests", "quotas", "max_input_bytes"}
_REQUEST = {"per", "rate", "fail"}
_QUOTA = {"per", "tokens", "window", "fail"}


def read_limits_file(path: Path) -> dict[str, Any]:
    """The file's limits as :class:`GuardPolicy` keyword arguments."""
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
    return out


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
    try:
        return GuardPolicy(**options)
    except ConfigurationError as exc:
        where = settings.limits_file or "the settings"
        raise ConfigurationError(f"{where}: {exc}") from None
