"""The guard's policy from settings and a limits file: what loads, and every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphops.errors import ConfigurationError
from graphops.limits import MemoryLimitStore, RequestLimit, TokenQuota
from graphops.limits.config import guard_policy
from graphops.settings import Settings, load_settings

GOOD = """\
token_estimate: 20000
max_input_bytes: 4096
requests:
  - {per: user, rate: "10/minute;500/day"}
  - {per: ip, rate: "100/minute", fail: closed}
quotas:
  - {per: user, tokens: 100000, window: day}
  - {per: tenant, tokens: 5000000, window: month, fail: open}
"""


def settings_with(tmp_path: Path, text: str | None, **more: object) -> Settings:
    path = None
    if text is not None:
        path = tmp_path / "limits.yaml"
        path.write_text(text)
    return Settings(data_dir=tmp_path / "data", limits_file=path, **more)  # type: ignore[arg-type]


def test_a_limits_file_becomes_the_guards_policy(tmp_path: Path) -> None:
    policy = guard_policy(settings_with(tmp_path, GOOD), token_estimate=45_000)
    assert policy.requests == (
        RequestLimit("user", "10/minute;500/day"),
        RequestLimit("ip", "100/minute", fail="closed"),
    )
    assert policy.quotas == (
        TokenQuota("user", 100_000),
        TokenQuota("tenant", 5_000_000, window="month", fail="open"),
    )
    assert policy.token_estimate == 20_000  # the file's, over the graph's ceiling
    assert policy.max_input_bytes == 4096
    assert isinstance(policy.store, MemoryLimitStore)  # no GRAPHOPS_REDIS_URL


def test_without_a_file_only_the_input_is_checked(tmp_path: Path) -> None:
    policy = guard_policy(settings_with(tmp_path, None, max_input_bytes=100), token_estimate=7)
    assert policy.requests == () and policy.quotas == () and policy.limiter is None
    assert policy.max_input_bytes == 100 and policy.token_estimate == 7
    assert policy.input_problem("x" * 101) is not None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "requests: [{per: user, rate: ten/minute}]",
            "requests[0]: RequestLimit.rate 'ten/minute'",
        ),
        ("requests: [{per: user}]", "requests[0]: "),
        ("requests: [{per: user, rate: 1/minute, burst: 3}]", "unknown keys ['burst']"),
        ("quotas: [{per: user, tokens: -5}]", "quotas[0]: TokenQuota.tokens is -5"),
        ("quotas: [{per: planet, tokens: 5}]", "TokenQuota.per is 'planet'"),
        ("quotas: {per: user}", "quotas holds a list"),
        ("rates: []", "the file has unknown keys ['rates']"),
        ("- just a list", "holds a mapping"),
        ("requests: [oops]", "requests[0] holds a mapping, not 'oops'"),
        ("token_estimate: -1", "GuardPolicy.token_estimate is -1"),
        ("requests: [{per: user, rate: '1/minute'", "is not YAML"),
    ],
)
def test_every_mistake_in_the_file_is_named(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        guard_policy(settings_with(tmp_path, text))
    assert fragment in str(caught.value)
    assert "limits.yaml" in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, limits_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigurationError, match=r"cannot read GRAPHOPS_LIMITS_FILE .*nope\.yaml"):
        guard_policy(settings)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("GRAPHOPS_MAX_INPUT_BYTES", "0", "GRAPHOPS_MAX_INPUT_BYTES"),
        ("GRAPHOPS_LIMITS_TIMEOUT", "-1", "GRAPHOPS_LIMITS_TIMEOUT"),
        ("GRAPHOPS_MAX_QUESTION_CHARS", "10", "unknown setting GRAPHOPS_MAX_QUESTION_CHARS"),
    ],
)
def test_bad_guard_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=fragment):
        load_settings()
