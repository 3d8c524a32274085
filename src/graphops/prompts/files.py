"""Prompt templates kept as files, outside the code.

A prompt file is ``prompts/<name>.md``: a YAML front matter (``description``,
``variables``) and then the messages, each introduced by a line ``[system]``,
``[user]`` or ``[assistant]``. Templates use ``{variable}`` placeholders
(``{{`` for a literal brace). Declared and used variables must match, so a typo
fails when the prompt is loaded, not half-way through a run.

A prompt read from a file is identified by its content hash (``route@file:3f2a…``)
until the SQL registry (:mod:`graphops.prompts.registry`) gives it a number
(``route@4``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from langchain_core.prompts import ChatPromptTemplate

from graphops.errors import ConfigurationError, InvalidInputError
from graphops.observe.semconv import PROMPT_METADATA
from graphops.prompts.refs import PROMPT_NAME

__all__ = ["PromptFile", "PromptLibrary", "parse_prompt"]

_ROLE_LINE = re.compile(r"^\[(system|user|assistant)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PromptFile:
    """One parsed prompt: its messages as (role, template) pairs."""

    name: str
    description: str
    variables: tuple[str, ...]
    messages: tuple[tuple[str, str], ...]
    content_hash: str
    text: str = ""
    version: int | None = None  # the registry's number; None for a file not yet published

    @property
    def ref(self) -> str:
        """``name@version`` as spans and ``graphops runs`` show it (``name@file:<hash>``)."""
        return f"{self.name}@{self.version if self.version else 'file:' + self.content_hash}"

    def to_chat_prompt(self) -> ChatPromptTemplate:
        """The LangChain template these messages make, tagged with :attr:`ref`.

        The tag is run metadata, so the telemetry handler records which prompt
        version each node and LLM call used.
        """
        roles = {"user": "human", "assistant": "ai", "system": "system"}
        template = ChatPromptTemplate.from_messages([(roles[r], t) for r, t in self.messages])
        template.metadata = {PROMPT_METADATA: self.ref}
        return template


def parse_prompt(name: str, text: str, *, version: int | None = None) -> PromptFile:
    """Parse a prompt file's text; a :class:`ConfigurationError` says what is wrong."""
    where = f"prompt {name!r}"
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.DOTALL)
    if match is None:
        raise ConfigurationError(f"{where}: must start with a '---' front matter block")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{where}: bad front matter: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigurationError(f"{where}: front matter must be a mapping")
    body = text[match.end() :]
    parts = _ROLE_LINE.split(body)
    if parts[0].strip():
        raise ConfigurationError(f"{where}: text before the first [system]/[user] line")
    messages = tuple(
        (role, content.strip()) for role, content in zip(parts[1::2], parts[2::2], strict=True)
    )
    if not messages:
        raise ConfigurationError(f"{where}: no [system]/[user]/[assistant] messages")
    declared = tuple(meta.get("variables") or ())
    prompt = PromptFile(
        name=name,
        description=str(meta.get("description", "")),
        variables=declared,
        messages=messages,
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        text=text,
        version=version,
    )
    try:
        used = set(prompt.to_chat_prompt().input_variables)
    except (ValueError, KeyError) as exc:
        raise ConfigurationError(f"{where}: bad template: {exc}") from None
    if used != set(declared):
        raise ConfigurationError(
            f"{where}: declares variables {sorted(declared)} but uses {sorted(used)}"
        )
    return prompt


class PromptLibrary:
    """Prompt files in one directory, parsed once and re-read when they change."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[float, PromptFile]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every prompt name in the directory."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.md"))

    def get(self, name: str) -> PromptFile:
        """The prompt called ``name``; a missing one is an error listing those that exist."""
        if not PROMPT_NAME.match(name):
            raise ConfigurationError(f"{name!r} is not a prompt name (lower case, digits, - and _)")
        path = self.directory / f"{name}.md"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise ConfigurationError(
                f"no prompt {name!r} in {self.directory} (found: {known}); "
                "set GRAPHOPS_PROMPTS_DIR to the folder that holds the prompt files"
            ) from None
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        prompt = parse_prompt(name, path.read_text(encoding="utf-8"))
        with self._lock:
            self._cache[name] = (mtime, prompt)
        return prompt

    def resolve(self, name: str, ref: int | str | None = None) -> PromptFile:
        """The file's current text; files keep no history, so ``ref`` must be None or its hash."""
        prompt = self.get(name)
        if ref is not None and str(ref).removeprefix("file:") != prompt.content_hash:
            raise InvalidInputError(
                f"prompt {name!r} version {ref!r}: prompt files keep only their current text "
                f"({prompt.ref}); earlier versions are in the prompt registry (RegistryPrompts)"
            )
        return prompt
