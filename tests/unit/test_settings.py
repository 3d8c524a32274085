from __future__ import annotations

from pathlib import Path

import pytest

from graphops.errors import ConfigurationError
from graphops.settings import Settings, load_settings


def test_defaults_are_embedded_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRAPHOPS_CHAT_MODEL", "GRAPHOPS_EMBEDDINGS_MODEL", "GRAPHOPS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.chat_model == "local"
    assert settings.embeddings_model == "local"
    assert settings.index_dir == Path(".graphops/index")
    assert settings.corpus == ("docs",)


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_CORPUS", "docs, notes ,https://example.org/a.md")
    monkeypatch.setenv("GRAPHOPS_TOP_K", "7")
    monkeypatch.setenv("GRAPHOPS_CHAT_MODEL", "google:gemini-2.5-flash")
    settings = load_settings()
    assert settings.corpus == ("docs", "notes", "https://example.org/a.md")
    assert settings.top_k == 7
    assert settings.chat_model == "google:gemini-2.5-flash"


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TOP_K", "7")
    assert load_settings(top_k=2).top_k == 2


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("GRAPHOPS_CHAT_MODEL", "gpt-4o", "GRAPHOPS_CHAT_MODEL"),
        ("GRAPHOPS_CHAT_MODEL", "openai:", "GRAPHOPS_CHAT_MODEL"),
        ("GRAPHOPS_TOP_K", "0", "GRAPHOPS_TOP_K"),
        ("GRAPHOPS_TOP_K", "many", "GRAPHOPS_TOP_K"),
        ("GRAPHOPS_LOG_FORMAT", "xml", "GRAPHOPS_LOG_FORMAT"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=fragment):
        load_settings()


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.top_k = 3  # type: ignore[misc]


def test_misspelt_variable_is_refused_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TOPK", "3")
    with pytest.raises(
        ConfigurationError, match="unknown setting GRAPHOPS_TOPK; did you mean GRAPHOPS_TOP_K"
    ):
        load_settings()


def test_overlap_must_be_below_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_CHUNK_OVERLAP", "900")
    with pytest.raises(ConfigurationError, match=r"chunk_overlap \(900\) must be smaller"):
        load_settings()


@pytest.mark.parametrize("variable", ["GRAPHOPS_DATA_DIR", "GRAPHOPS_PROMPTS_DIR"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # an empty GRAPHOPS_DATA_DIR= would otherwise put the database in the current directory
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"{variable}: must not be empty"):
        load_settings()


@pytest.mark.parametrize("value", ["jaeger", "otlp,jaeger", "console, zipkin"])
def test_an_unknown_trace_exporter_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GRAPHOPS_TRACES_EXPORTER", value)
    with pytest.raises(
        ConfigurationError,
        match=r"GRAPHOPS_TRACES_EXPORTER: unknown trace exporter '(jaeger|zipkin)': use otlp, ",
    ):
        load_settings()


@pytest.mark.parametrize("value", ["none", "otlp", "console", "otlp, console", " otlp ,none"])
def test_known_trace_exporters_load(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GRAPHOPS_TRACES_EXPORTER", value)
    assert load_settings().traces_exporter == value
