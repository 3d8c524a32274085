"""Prompts: template files now; the SQL registry, flags and rollouts build on them."""

from __future__ import annotations

from graphops.prompts.files import PromptFile, PromptLibrary, parse_prompt

__all__ = ["PromptFile", "PromptLibrary", "parse_prompt"]
