"""graphops: LangGraph-native LLMOps middleware for RAG and agent graphs.

The public API grows issue by issue; today it is the settings, the exception tree,
the model factories and the test fakes. Nothing here loads a model or reads the
environment at import time.
"""

from __future__ import annotations

from graphops.errors import (
    ConfigurationError,
    CorpusIndexError,
    GraphopsError,
    IngestError,
    InvalidInputError,
    ModelError,
    RunError,
    UserError,
)
from graphops.settings import Settings, load_settings

__all__ = [
    "ConfigurationError",
    "CorpusIndexError",
    "GraphopsError",
    "IngestError",
    "InvalidInputError",
    "ModelError",
    "RunError",
    "Settings",
    "UserError",
    "load_settings",
]
