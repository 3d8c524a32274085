"""Where a node's prompt comes from: files, or the registry with files as the fallback.

A graph asks for prompts by name (``await aprompt(source, "answer")``); which
version it gets is decided here, in this order:

1. a per-run override in the run's config, ``configurable["graphops_prompts"]``
   (``{"answer": 3}`` or ``{"answer": "staging"}``): what ``graphops replay --rerun
   --prompt answer=3`` passes;
2. the registry version the deployment's label (``production`` by default,
   ``GRAPHOPS_PROMPT_LABEL``) points at;
3. the prompt file, published to the registry the first time it is used with
   this content, so every run records a version number that can be fetched later.

Label lookups are cached for ``refresh_s`` seconds (a moved label takes effect
within that, with no redeploy); versions are immutable, so they are cached for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
from langchain_core.prompts import ChatPromptTemplate

from graphops.db.engine import reaching
from graphops.errors import InvalidInputError
from graphops.prompts.files import PromptFile, PromptLibrary
from graphops.prompts.refs import check_name, default_actor, parse_ref
from graphops.prompts.registry import PromptRegistry

__all__ = [
    "PROMPT_OVERRIDES_KEY",
    "PromptSource",
    "RegistryPrompts",
    "aprompt",
    "prompt_overrides",
]

PROMPT_OVERRIDES_KEY = "graphops_prompts"
"""The ``configurable`` key of a run's per-prompt version overrides."""


@runtime_checkable
class PromptSource(Protocol):
    """Anything that turns a prompt name (and maybe a version or label) into a prompt."""

    def resolve(self, name: str, ref: int | str | None = None) -> PromptFile:
        """The prompt ``name`` at ``ref``, or the one this deployment uses when ``ref`` is None."""
        ...


def prompt_overrides(config: Mapping[str, Any] | None = None) -> dict[str, int | str]:
    """The run's ``{name: version or label}`` overrides (from the current run's config)."""
    if config is None:
        from langgraph.config import get_config

        try:
            config = get_config()
        except RuntimeError:  # not inside a runnable: no run, no overrides
            return {}
    raw = (config.get("configurable") or {}).get(PROMPT_OVERRIDES_KEY) or {}
    if not isinstance(raw, Mapping):
        raise InvalidInputError(
            f"configurable[{PROMPT_OVERRIDES_KEY!r}] must map prompt names to versions, "
            f"not {type(raw).__name__}"
        )
    out: dict[str, int | str] = {}
    for name, ref in raw.items():
        parsed = parse_ref(ref if isinstance(ref, int | str) else str(ref))
        if parsed is None:
            continue
        out[check_name(str(name))] = parsed
    return out


async def aprompt(
    source: PromptSource, name: str, config: Mapping[str, Any] | None = None
) -> ChatPromptTemplate:
    """The chat template for ``name`` in this run, resolved off the event loop."""
    ref = prompt_overrides(config).get(name)
    prompt = await anyio.to_thread.run_sync(source.resolve, name, ref)
    return prompt.to_chat_prompt()


class RegistryPrompts:
    """Prompts from the registry by label, files publishing themselves on first use."""

    def __init__(
        self,
        library: PromptLibrary,
        registry: PromptRegistry,
        *,
        label: str = "production",
        author: str | None = None,
        refresh_s: float = 5.0,
    ) -> None:
        self.library = library
        self.registry = registry
        self.label = label
        self.author = author or default_actor()
        self.refresh_s = refresh_s
        self._labels: dict[str, tuple[float, int | None]] = {}
        self._versions: dict[tuple[str, int], PromptFile] = {}
        self._published: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str, ref: int | str | None = None) -> PromptFile:
        """``ref`` from the registry; else the label's version; else the file (published).

        A database that stops answering is a :class:`~graphops.errors.RunError` naming it.
        """
        with reaching(self.registry.url):
            return self._resolve(name, ref)

    def _resolve(self, name: str, ref: int | str | None) -> PromptFile:
        if ref is not None:
            parsed = parse_ref(ref)
            number = parsed if isinstance(parsed, int) else None
            if number is None:
                return self.registry.get(name, parsed).prompt()
            return self._version(name, number)
        pinned = self._label(name)
        if pinned is not None:
            return self._version(name, pinned)
        file = self.library.get(name)
        key = (name, file.content_hash)
        with self._lock:
            number = self._published.get(key)
        if number is None:
            number = self.registry.publish(
                name, file.text, author=self.author, message="published on first use"
            ).version
            with self._lock:
                self._published[key] = number
        return replace(file, version=number)

    def _label(self, name: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            cached = self._labels.get(name)
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        found = self.registry.label_of(name, self.label)
        with self._lock:
            self._labels[name] = (now, found)
        return found

    def _version(self, name: str, number: int) -> PromptFile:
        with self._lock:
            cached = self._versions.get((name, number))
        if cached is not None:
            return cached
        prompt = self.registry.get(name, number).prompt()
        with self._lock:
            self._versions[(name, number)] = prompt
        return prompt
