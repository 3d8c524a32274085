"""Build the chat model and the embeddings a setting names.

A spec is ``local``, ``openai:<model>`` or ``google:<model>``. Each provider is one
small function in a table, so adding one is adding a row, not a branch. Remote
providers read their API key from the provider's usual environment variable; a
missing key is a :class:`ConfigurationError` that names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from graphops.errors import ConfigurationError
from graphops.settings import Settings

__all__ = ["make_chat_model", "make_embeddings", "split_spec"]

_KEY_VARIABLES = {"openai": ("OPENAI_API_KEY",), "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY")}


def split_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``; ``"local"`` → ``("local", "")``."""
    provider, _, name = spec.partition(":")
    return provider, name


def _api_key(provider: str, spec: str, env: Mapping[str, str]) -> str:
    for variable in _KEY_VARIABLES[provider]:
        if env.get(variable):
            return env[variable]
    names = " or ".join(_KEY_VARIABLES[provider])
    raise ConfigurationError(f"{spec} needs an API key: set {names}")


def _openai_key(settings: Settings, spec: str, env: Mapping[str, str]) -> str:
    # a self-hosted OpenAI-compatible server (vLLM, Ollama) usually takes any key
    if settings.openai_base_url and not env.get("OPENAI_API_KEY"):
        return "not-needed"
    return _api_key("openai", spec, env)


def _local_chat(settings: Settings, name: str, env: Mapping[str, str]) -> BaseChatModel:
    from graphops.models.local_chat import ChatLocalLlama

    options: dict[str, Any] = {
        "n_ctx": settings.n_ctx,
        "n_threads": settings.n_threads,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    if settings.local_model_path is not None:
        options["model_path"] = settings.local_model_path
    return ChatLocalLlama(**options)


def _openai_chat(settings: Settings, name: str, env: Mapping[str, str]) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=name,
        api_key=_openai_key(settings, f"openai:{name}", env),
        base_url=settings.openai_base_url,
        temperature=settings.temperature,
        max_completion_tokens=settings.max_tokens,
        stream_usage=True,
        max_retries=0,  # the resilient model's loop is the one retry loop
        timeout=settings.llm_timeout,
    )


def _google_chat(settings: Settings, name: str, env: Mapping[str, str]) -> BaseChatModel:
    from langchain_google_genai import ChatGoogleGenerativeAI

    return ChatGoogleGenerativeAI(
        model=name,
        google_api_key=_api_key("google", f"google:{name}", env),
        temperature=settings.temperature,
        max_output_tokens=settings.max_tokens,
        max_retries=1,  # the Google SDK reads 0 as "its default"; 1 is one attempt, no retry
        timeout=settings.llm_timeout,
    )


def _local_embeddings(settings: Settings, name: str, env: Mapping[str, str]) -> Embeddings:
    from graphops.models.local_embeddings import LocalMiniLMEmbeddings

    return LocalMiniLMEmbeddings(cache_dir=settings.model_cache_dir, n_threads=settings.n_threads)


def _openai_embeddings(settings: Settings, name: str, env: Mapping[str, str]) -> Embeddings:
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(
        model=name,
        openai_api_key=SecretStr(_openai_key(settings, f"openai:{name}", env)),
        openai_api_base=settings.openai_base_url,
    )


def _google_embeddings(settings: Settings, name: str, env: Mapping[str, str]) -> Embeddings:
    from langchain_google_genai import GoogleGenerativeAIEmbeddings

    return GoogleGenerativeAIEmbeddings(
        model=name,
        google_api_key=SecretStr(_api_key("google", f"google:{name}", env)),
    )


_Factory = Callable[[Settings, str, Mapping[str, str]], Any]
_CHAT: dict[str, _Factory] = {"local": _local_chat, "openai": _openai_chat, "google": _google_chat}
_EMBEDDINGS: dict[str, _Factory] = {
    "local": _local_embeddings,
    "openai": _openai_embeddings,
    "google": _google_embeddings,
}


def _build(
    table: dict[str, _Factory], spec: str, settings: Settings, env: Mapping[str, str]
) -> Any:
    provider, name = split_spec(spec)
    factory = table.get(provider)
    if factory is None:
        raise ConfigurationError(
            f"unknown model provider {provider!r} in {spec!r}: use one of {sorted(table)}"
        )
    return factory(settings, name, env)


def make_chat_model(settings: Settings, env: Mapping[str, str] | None = None) -> BaseChatModel:
    """The chat model ``settings.chat_model`` names (nothing loads until its first call).

    A remote model comes as a :class:`~graphops.models.resilient.ResilientChatModel`
    over ``settings.chat_chain`` (by default: it, then the local model): retries
    inside the run's deadline, a circuit breaker per model (shared through
    ``GRAPHOPS_REDIS_URL`` when set), fallback down the chain. The local model alone
    comes bare: retrying or breaking a model in this process protects nothing.
    When the limits file (``GRAPHOPS_LIMITS_FILE``) caps a provider's calls in
    flight (``llm_in_flight``), its model comes wrapped in that limit.
    """
    from graphops.limits.config import limited_chat

    environ = os.environ if env is None else env
    chain = settings.chat_chain
    models = {
        spec: limited_chat(settings, _build(_CHAT, spec, settings, environ)) for spec in chain
    }
    if chain == ("local",):
        return models["local"]
    from graphops.models.resilient import resilient_chat
    from graphops.resilience.retry import RetryPolicy

    return resilient_chat(
        models, retry=RetryPolicy(attempts=settings.llm_attempts), breaker_store=_breakers(settings)
    )


def _breakers(settings: Settings) -> Any:
    """The breakers' shared store: Redis when ``GRAPHOPS_REDIS_URL`` is set, else per process."""
    if settings.redis_url is None:
        return None
    from graphops.resilience.breaker_redis import RedisBreakerStore

    return RedisBreakerStore.from_url(settings.redis_url, timeout=settings.limits_timeout)


def make_embeddings(settings: Settings, env: Mapping[str, str] | None = None) -> Embeddings:
    """The embeddings ``settings.embeddings_model`` names."""
    embeddings: Embeddings = _build(
        _EMBEDDINGS, settings.embeddings_model, settings, os.environ if env is None else env
    )
    return embeddings
