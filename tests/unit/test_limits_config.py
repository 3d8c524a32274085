"""The guard's policy from settings and a limits file: what loads, and every mistake named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphops.errors import ConfigurationError
from graphops.limits import (
    Bulkhead,
    MemoryLimitStore,
    MemorySlotStore,
    RedisLimitStore,
    RedisSlotStore,
    RequestLimit,
    TokenQuota,
)
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
bulkhead: {slots: 4, per: tenant, wait_s: 2.5}
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
    assert policy.bulkhead == Bulkhead(slots=4, per="tenant", wait_s=2.5)
    assert isinstance(policy.slot_store, MemorySlotStore)


def test_a_redis_url_moves_limits_and_slots_to_redis(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, GOOD, redis_url="redis://127.0.0.1:1/0", limits_timeout=0.2)
    policy = guard_policy(settings)  # nothing connects yet
    assert isinstance(policy.store, RedisLimitStore)
    assert isinstance(policy.slot_store, RedisSlotStore)


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
        ("bulkhead: {slots: 0}", "bulkhead: Bulkhead.slots is 0"),
        ("bulkhead: {slots: 2, queue: 9}", "bulkhead has unknown keys ['queue']"),
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


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("limits", "show"), "one of the arguments --user --tenant --ip --api-key is required"),
        (("limits", "show", "--user", " "), "--user needs a non-empty id"),
        (("limits", "reset", "--user", "a", "--tenant", "b"), "not allowed with argument"),
        (("limits", "show", "--user", "ann"), "no limits are configured"),
    ],
)
def test_limits_commands_refuse_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: tuple[str, ...],
    fragment: str,
) -> None:
    from graphops.cli import main

    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path))
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphops: error: ") and fragment in err


def test_limits_show_in_memory_says_nothing_is_shared(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from graphops.cli import main

    limits = tmp_path / "limits.yaml"
    limits.write_text(GOOD)
    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHOPS_LIMITS_FILE", str(limits))
    assert main(["limits", "show", "--user", "ann"]) == 0
    out = capsys.readouterr().out
    assert "this process's memory (nothing is shared: set GRAPHOPS_REDIS_URL)" in out
    assert "10 per 1 minute" in out and "100000 per day" in out and "0 used" in out


def test_llm_in_flight_wraps_the_chat_model_of_a_limited_provider(tmp_path: Path) -> None:
    from graphops.models import make_chat_model
    from graphops.models.limited import ConcurrencyLimitedChatModel

    settings = settings_with(tmp_path, "llm_in_flight: {llama_cpp: 1, openai: 8}\n")
    local = make_chat_model(settings, env={})  # builds ChatLocalLlama; nothing loads
    assert isinstance(local, ConcurrencyLimitedChatModel)
    assert local.key == "llm:llama_cpp" and local.max_in_flight == 1
    assert local._get_ls_params()["ls_provider"] == "llama_cpp"  # spans see the real one
    remote = make_chat_model(
        settings.model_copy(update={"chat_model": "openai:gpt-4o-mini"}),
        env={"OPENAI_API_KEY": "sk-test"},
    )
    # each link of the resilient chain carries its own provider's limit
    openai, fallback = (link.model for link in remote.links)  # type: ignore[attr-defined]
    assert isinstance(openai, ConcurrencyLimitedChatModel) and openai.max_in_flight == 8
    assert isinstance(fallback, ConcurrencyLimitedChatModel) and fallback.max_in_flight == 1
    unlimited = settings_with(tmp_path, "llm_in_flight: {openai: 8}\n")
    assert not isinstance(make_chat_model(unlimited, env={}), ConcurrencyLimitedChatModel)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("llm_in_flight: 8", "llm_in_flight maps providers to calls"),
        ("llm_in_flight: {openai: 0}", "llm_in_flight.openai is 0"),
        ("llm_in_flight: {openai: many}", "llm_in_flight.openai is 'many'"),
    ],
)
def test_bad_llm_in_flight_is_named(tmp_path: Path, text: str, fragment: str) -> None:
    from graphops.limits.config import llm_in_flight

    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        llm_in_flight(settings_with(tmp_path, text))
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        guard_policy(settings_with(tmp_path, text))
