"""Integration fixtures: real local models, a real index of docs/ built once per session."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphops.corpus.ensure import ensure_index
from graphops.models import make_chat_model, make_embeddings
from graphops.models.local_chat import ChatLocalLlama
from graphops.models.local_embeddings import LocalMiniLMEmbeddings
from graphops.settings import Settings
from tests.integration.redis_support import (  # noqa: F401 - Redis fixtures for every module
    private_redis,
    redis_prefix,
    shared_redis_url,
)
from tests.integration.support import private_database

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder is an integration test."""
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Embedded defaults with the state in a temporary folder and docs/ as the corpus."""
    return Settings(
        data_dir=tmp_path_factory.mktemp("graphops-data"),
        prompts_dir=ROOT / "prompts",
        corpus=(str(ROOT / "docs"),),
        n_threads=2,
    )


@pytest.fixture(scope="session")
def local_chat(local_settings: Settings) -> ChatLocalLlama:
    chat = make_chat_model(local_settings, env={})
    assert isinstance(chat, ChatLocalLlama)
    return chat


@pytest.fixture(scope="session")
def local_embeddings(local_settings: Settings) -> LocalMiniLMEmbeddings:
    embeddings = make_embeddings(local_settings, env={})
    assert isinstance(embeddings, LocalMiniLMEmbeddings)
    return embeddings


@pytest.fixture(scope="session")
def docs_index(local_settings: Settings, local_embeddings: LocalMiniLMEmbeddings) -> Path:
    """docs/ indexed with the real embeddings, once (from the root, so ids read docs/…)."""
    with contextlib.chdir(ROOT):
        ensure_index(local_settings, local_embeddings)
    return local_settings.index_dir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local Postgres, dropped afterwards."""
    with private_database("graphops_test") as (_, name):
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """graphops' database at its newest schema: a SQLite file, then the real Postgres."""
    from graphops.db import downgrade, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'graphops.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
        downgrade(url, "base")
    upgrade(url)
    return url
