"""Prompts: template files, the SQL registry (versions, labels, audit) and per-run resolution.

Names load on first use, so ``graphops --help`` does not import LangChain's
templates and SQLAlchemy just to list the ``prompts`` commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphops.prompts.files import PromptFile, PromptLibrary, parse_prompt
    from graphops.prompts.registry import AuditEntry, PromptRegistry, PromptVersion
    from graphops.prompts.source import (
        PROMPT_OVERRIDES_KEY,
        PromptSource,
        RegistryPrompts,
        aprompt,
        prompt_overrides,
    )

_LAZY = {
    "PromptFile": "files",
    "PromptLibrary": "files",
    "parse_prompt": "files",
    "AuditEntry": "registry",
    "PromptRegistry": "registry",
    "PromptVersion": "registry",
    "PROMPT_OVERRIDES_KEY": "source",
    "PromptSource": "source",
    "RegistryPrompts": "source",
    "aprompt": "source",
    "prompt_overrides": "source",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphops.prompts' has no attribute {name!r}")
    return getattr(importlib.import_module(f"graphops.prompts.{module}"), name)


__all__ = [
    "PROMPT_OVERRIDES_KEY",
    "AuditEntry",
    "PromptFile",
    "PromptLibrary",
    "PromptRegistry",
    "PromptSource",
    "PromptVersion",
    "RegistryPrompts",
    "aprompt",
    "parse_prompt",
    "prompt_overrides",
]
