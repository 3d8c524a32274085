"""Prompts: template files, the SQL registry (versions, labels, audit) and per-run resolution."""

from __future__ import annotations

from graphops.prompts.files import PromptFile, PromptLibrary, parse_prompt
from graphops.prompts.registry import AuditEntry, PromptRegistry, PromptVersion
from graphops.prompts.source import (
    PROMPT_OVERRIDES_KEY,
    PromptSource,
    RegistryPrompts,
    aprompt,
    prompt_overrides,
)

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
