from __future__ import annotations

import pytest
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from graphops.errors import ConfigurationError
from graphops.models import make_chat_model, make_embeddings
from graphops.models.local_chat import ChatLocalLlama
from graphops.models.local_embeddings import LocalMiniLMEmbeddings
from graphops.models.resilient import ResilientChatModel
from graphops.settings import Settings


def test_local_models_are_built_without_loading(tmp_path: object) -> None:
    settings = Settings(n_threads=2, temperature=0.0)
    chat = make_chat_model(settings, env={})
    assert isinstance(chat, ChatLocalLlama)
    assert chat.model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert chat.n_threads == 2
    embeddings = make_embeddings(settings, env={})
    assert isinstance(embeddings, LocalMiniLMEmbeddings)
    assert embeddings.dimensions == 384


def test_missing_local_model_file_is_a_configuration_error(tmp_path: object) -> None:
    settings = Settings(local_model_path="/nonexistent/model.gguf")
    chat = make_chat_model(settings, env={})
    with pytest.raises(ConfigurationError, match="model file not found"):
        chat.invoke("hi")


@pytest.mark.parametrize(
    ("spec", "variable"),
    [("openai:gpt-4o-mini", "OPENAI_API_KEY"), ("google:gemini-2.5-flash", "GOOGLE_API_KEY")],
)
def test_missing_api_key_names_the_variable(spec: str, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        make_chat_model(Settings(chat_model=spec), env={})
    with pytest.raises(ConfigurationError, match=variable):
        make_embeddings(Settings(embeddings_model=spec), env={})


def test_remote_providers_are_langchain_models_in_a_resilient_chain() -> None:
    env = {"OPENAI_API_KEY": "sk-test", "GEMINI_API_KEY": "g-test"}
    openai = make_chat_model(Settings(chat_model="openai:gpt-4o-mini"), env=env)
    assert isinstance(openai, ResilientChatModel)
    primary, fallback = openai.links
    assert (primary.name, fallback.name) == ("openai:gpt-4o-mini", "local")
    assert isinstance(primary.model, ChatOpenAI) and isinstance(fallback.model, ChatLocalLlama)
    assert primary.model.model_name == "gpt-4o-mini" and openai.model_name == "gpt-4o-mini"
    # one retry loop (the chain's), and a request timeout the deadline can only shorten
    assert primary.model.max_retries == 0 and primary.model.request_timeout == 30.0
    assert primary.timeout_kwarg == "timeout" and fallback.timeout_kwarg is None
    google = make_chat_model(
        Settings(chat_model="google:gemini-2.5-flash", fallback_models="openai:gpt-4o-mini"),
        env=env,
    )
    assert isinstance(google, ResilientChatModel)
    assert [link.name for link in google.links] == ["google:gemini-2.5-flash", "openai:gpt-4o-mini"]
    assert isinstance(google.links[0].model, ChatGoogleGenerativeAI)
    assert google.links[0].model.max_retries == 1  # the Google SDK's "no retry"
    alone = make_chat_model(
        Settings(chat_model="openai:gpt-4o-mini", fallback_models="none"), env=env
    )
    assert isinstance(alone, ResilientChatModel) and len(alone.links) == 1
    assert isinstance(
        make_embeddings(Settings(embeddings_model="openai:text-embedding-3-small"), env=env),
        OpenAIEmbeddings,
    )


def test_a_bad_fallback_spec_is_a_configuration_error() -> None:
    from graphops.settings import load_settings

    with pytest.raises(ConfigurationError, match="not a model spec"):
        load_settings(fallback_models="openai")


def test_openai_compatible_server_needs_no_key() -> None:
    settings = Settings(chat_model="openai:qwen", openai_base_url="http://127.0.0.1:8000/v1")
    chat = make_chat_model(settings, env={})
    assert isinstance(chat, ResilientChatModel)
    inner = chat.links[0].model
    assert isinstance(inner, ChatOpenAI)
    assert str(inner.openai_api_base) == "http://127.0.0.1:8000/v1"


def test_api_keys_never_show_in_the_model_repr() -> None:
    chat = make_chat_model(
        Settings(chat_model="openai:gpt-4o-mini"), env={"OPENAI_API_KEY": "sk-secret-123"}
    )
    assert "sk-secret-123" not in repr(chat)


def test_breakers_are_shared_through_the_redis_url() -> None:
    from graphops.resilience.breaker_memory import MemoryBreakerStore
    from graphops.resilience.breaker_redis import RedisBreakerStore

    env = {"OPENAI_API_KEY": "sk-test"}
    shared = make_chat_model(
        Settings(chat_model="openai:gpt-4o-mini", redis_url="redis://127.0.0.1:6379/0"), env=env
    )  # nothing connects until a call
    assert isinstance(shared, ResilientChatModel)
    stores = {type(link.breaker.store) for link in shared.links}
    assert stores == {RedisBreakerStore}
    alone = make_chat_model(Settings(chat_model="openai:gpt-4o-mini"), env=env)
    assert isinstance(alone, ResilientChatModel)
    assert all(isinstance(link.breaker.store, MemoryBreakerStore) for link in alone.links)
