"""graphops: LangGraph-native LLMOps middleware for RAG and agent graphs.

The public API: :func:`build_observed_graph` and the policy objects it takes
(:class:`Ops` and the step policies), the telemetry pipeline (:class:`Telemetry`),
the prompt registry and per-run prompt resolution (:func:`aprompt`), the settings
and the exception tree. Nothing here loads a model, reads the environment or
imports LangGraph at import time: the heavy names load on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from graphops.errors import (
    BudgetExhausted,
    ConfigurationError,
    ConflictError,
    CorpusIndexError,
    GraphopsError,
    IngestError,
    InvalidInputError,
    ModelError,
    ProvidersUnavailable,
    RefusedError,
    RunError,
    StorageError,
    UserError,
)
from graphops.settings import Settings, load_settings

# a library's loggers stay silent until the application configures logging (no
# "lastResort" lines on stderr): graphops.observe.logs.configure_logging, or your own
logging.getLogger("graphops").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from graphops.builder import build_observed_graph
    from graphops.checkpoint.replay import replay
    from graphops.observe.telemetry import Telemetry
    from graphops.policies import (
        BudgetPolicy,
        CacheAnswer,
        CachePolicy,
        DegradePolicy,
        GuardPolicy,
        NodeOps,
        Ops,
    )
    from graphops.prompts import PromptRegistry, RegistryPrompts, aprompt
    from graphops.runtime import RunScope, run_scope

_LAZY = {
    "build_observed_graph": "graphops.builder",
    "replay": "graphops.checkpoint.replay",
    "Telemetry": "graphops.observe.telemetry",
    "PromptRegistry": "graphops.prompts",
    "RegistryPrompts": "graphops.prompts",
    "aprompt": "graphops.prompts",
    "RunScope": "graphops.runtime",
    "run_scope": "graphops.runtime",
    **{
        name: "graphops.policies"
        for name in (
            "BudgetPolicy",
            "CacheAnswer",
            "CachePolicy",
            "DegradePolicy",
            "GuardPolicy",
            "NodeOps",
            "Ops",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BudgetExhausted",
    "BudgetPolicy",
    "CacheAnswer",
    "CachePolicy",
    "ConfigurationError",
    "ConflictError",
    "CorpusIndexError",
    "DegradePolicy",
    "GraphopsError",
    "GuardPolicy",
    "IngestError",
    "InvalidInputError",
    "ModelError",
    "NodeOps",
    "Ops",
    "PromptRegistry",
    "ProvidersUnavailable",
    "RefusedError",
    "RegistryPrompts",
    "RunError",
    "RunScope",
    "Settings",
    "StorageError",
    "Telemetry",
    "UserError",
    "aprompt",
    "build_observed_graph",
    "load_settings",
    "replay",
    "run_scope",
]
