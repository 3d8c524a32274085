"""Where a node's prompt comes from: files, or the registry with files as the fallback.

A graph asks for prompts by name (``await aprompt(source, "answer")``); which
version it gets is decided here, in this order:

1. a per-run override in the run's config, ``configurable["graphops_prompts"]``
   (``{"answer": 3}`` or ``{"answer": "staging"}``): what ``graphops replay --rerun
   --prompt answer=3`` passes;
2. the version the answer cache looked the run up with (``RunScope.prompt_pins``):
   a label moved during the run does not make its stored answer's key a lie;
3. the variant of the flag named like the prompt, as the run's scope resolved it
   when the run started (:func:`flagged_ref`): a version number or a label;
4. the registry version the deployment's label (``production`` by default,
   ``GRAPHOPS_PROMPT_LABEL``) points at;
5. the prompt file, published to the registry the first time it is used with
   this content, so every run records a version number that can be fetched later.

Label lookups are cached for ``refresh_s`` seconds (a moved label takes effect
within that, with no redeploy); versions are immutable, so they are cached for good.

Stale-if-error: when the registry's database stops answering (unreachable,
refusing connections, locked, damaged: a :class:`~graphops.errors.RunError` from
the database layer), :class:`RegistryPrompts` serves the last version it resolved
for that name and ref instead of failing the run; a label lookup it never
resolved gets the prompt file (what the deployment ships). An explicit ref with
no last good copy still raises: a re-run asking for version 3 never silently
gets another one. So does a registry that has not answered once since the
source was made: that is a wrong URL or a database not up yet, not an outage.
Each stale answer carries the version number it really is, counts in
``graphops_prompt_stale_total{prompt}``, and marks the asking node's span
(``graphops.prompt.stale`` attribute and event); each outage logs one warning.
While failing, the registry is tried again at most once per ``retry_s`` seconds;
the first answer ends the outage. A prompt the registry does not have
(:class:`~graphops.errors.InvalidInputError`) is not an outage.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
from langchain_core.prompts import ChatPromptTemplate
from sqlalchemy.exc import DBAPIError

from graphops.db.engine import reaching
from graphops.errors import ConfigurationError, InvalidInputError, RunError
from graphops.prompts.files import PromptFile, PromptLibrary
from graphops.prompts.refs import check_name, default_actor, parse_ref
from graphops.prompts.registry import PromptRegistry

if TYPE_CHECKING:
    from graphops.observe.metrics import Metrics
    from graphops.runtime import RunScope

__all__ = [
    "PROMPT_OVERRIDES_KEY",
    "PROMPT_STALE",
    "PromptSource",
    "RegistryPrompts",
    "aprompt",
    "flagged_ref",
    "pinned_version",
    "prompt_overrides",
]

PROMPT_OVERRIDES_KEY = "graphops_prompts"
"""The ``configurable`` key of a run's per-prompt version overrides."""

PROMPT_STALE = "graphops.prompt.stale"
"""The node span attribute and event of a prompt served stale (the registry failed)."""

_log = logging.getLogger("graphops.prompts")
_T = TypeVar("_T")


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


def _scope(config: Mapping[str, Any] | None) -> RunScope | None:
    """The run scope of ``config`` (the current run's when None; None outside a run)."""
    if config is None:
        from langgraph.config import get_config

        try:
            config = get_config()
        except RuntimeError:
            return None
    from graphops.runtime import run_scope

    return run_scope(config)  # type: ignore[arg-type]


def pinned_version(name: str, config: Mapping[str, Any] | None = None) -> int | None:
    """The version of ``name`` this run's cache lookup keyed on, if it pinned one."""
    scope = _scope(config)
    return scope.prompt_pins.get(name) if scope is not None else None


def flagged_ref(name: str, config: Mapping[str, Any] | None = None) -> int | str | None:
    """The version or label the run's flag for prompt ``name`` gave it, if there is one.

    A flag value that is no version or label (a flag named like a prompt but made
    for something else) is ignored with a warning: the prompt's label decides.
    """
    from graphops.flags.resolver import prompt_flag

    scope = _scope(config)
    assignment = scope.variants.get(prompt_flag(name)) if scope is not None else None
    if assignment is None:
        return None
    value = assignment.value
    if not isinstance(value, bool) and isinstance(value, int | str):
        try:
            return parse_ref(value)
        except InvalidInputError:
            pass
    _log.warning(
        "flag %r gave prompt %r the variant %r, whose value %r is no version or label: "
        "the label decides",
        assignment.flag,
        name,
        assignment.variant,
        value,
    )
    return None


async def aprompt(
    source: PromptSource, name: str, config: Mapping[str, Any] | None = None
) -> ChatPromptTemplate:
    """The chat template for ``name`` in this run, resolved off the event loop."""
    ref = prompt_overrides(config).get(name)
    if ref is None:
        ref = pinned_version(name, config)
    if ref is None:
        ref = flagged_ref(name, config)
    # the worker thread runs in a copy of this context, so the run's config (and
    # with it the node's span) is still visible to the source there
    prompt = await anyio.to_thread.run_sync(source.resolve, name, ref)
    return prompt.to_chat_prompt()


class _RegistryDown(Exception):
    """Internal: the registry did not answer; ``error`` is the graphops error saying why."""

    def __init__(self, error: RunError) -> None:
        super().__init__(str(error))
        self.error = error


class RegistryPrompts:
    """Prompts from the registry by label, files publishing themselves on first use.

    ``retry_s``: while the registry fails, how long to serve stale prompts before
    asking it again. ``metrics``: where stale answers are counted (the process-wide
    metrics, created on first need, by default). ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        library: PromptLibrary,
        registry: PromptRegistry,
        *,
        label: str = "production",
        author: str | None = None,
        refresh_s: float = 5.0,
        retry_s: float = 5.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.library = library
        self.registry = registry
        self.label = label
        self.author = author or default_actor()
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._metrics = metrics
        self._clock = clock
        self._labels: dict[str, tuple[float, int | None]] = {}
        self._versions: dict[tuple[str, int], PromptFile] = {}
        self._published: dict[tuple[str, str], int] = {}
        self._last_good: dict[tuple[str, int | str | None], PromptFile] = {}
        self._down: RunError | None = None  # the outage's latest error; None: answering
        self._answered = False  # the registry answered at least once (so outages are stale)
        self._next_try = 0.0  # while down: when the registry may be asked again
        self._lock = threading.Lock()

    @property
    def stale(self) -> bool:
        """Whether the registry is failing, so prompts are being served stale right now."""
        with self._lock:
            return self._down is not None and self._answered

    def resolve(self, name: str, ref: int | str | None = None) -> PromptFile:
        """``ref`` from the registry; else the label's version; else the file (published).

        When the registry does not answer, the last good version for ``(name, ref)``
        (for a label lookup without one, the file) is served stale; an explicit
        ``ref`` with no last good copy, or a registry that never answered, raises
        the database's :class:`~graphops.errors.RunError`.
        """
        key = (name, parse_ref(ref))
        try:
            prompt = self._resolve(name, ref)
        except _RegistryDown as down:
            with self._lock:
                served = self._last_good.get(key)
                answered = self._answered
            if served is None and ref is None and answered:
                served = self._file_fallback(name)
            if served is None:  # a copy: the outage's one error gathers no tracebacks
                raise copy.copy(down.error) from None
            self._report_stale(served, down.error)
            return served
        with self._lock:
            self._last_good[key] = prompt
        return prompt

    def _resolve(self, name: str, ref: int | str | None) -> PromptFile:
        if ref is not None:
            parsed = parse_ref(ref)
            number = parsed if isinstance(parsed, int) else None
            if number is None:
                return self._ask(lambda: self.registry.get(name, parsed)).prompt()
            return self._version(name, number)
        pinned = self._label(name)
        if pinned is not None:
            return self._version(name, pinned)
        file = self.library.get(name)
        key = (name, file.content_hash)
        with self._lock:
            number = self._published.get(key)
        if number is None:
            number = self._ask(
                lambda: self.registry.publish(
                    name, file.text, author=self.author, message="published on first use"
                )
            ).version
            with self._lock:
                self._published[key] = number
        return replace(file, version=number)

    def _label(self, name: str) -> int | None:
        now = self._clock()
        with self._lock:
            cached = self._labels.get(name)
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        found = self._ask(lambda: self.registry.label_of(name, self.label))
        with self._lock:
            self._labels[name] = (now, found)
        return found

    def _version(self, name: str, number: int) -> PromptFile:
        with self._lock:
            cached = self._versions.get((name, number))
        if cached is not None:
            return cached
        prompt = self._ask(lambda: self.registry.get(name, number)).prompt()
        with self._lock:
            self._versions[(name, number)] = prompt
        return prompt

    # ------------------------------------------------------------ stale-if-error
    def _ask(self, call: Callable[[], _T]) -> _T:
        """``call`` on the registry; :class:`_RegistryDown` when it fails (or is resting).

        While down, only one caller per ``retry_s`` gets through to try again.
        """
        with self._lock:
            if self._down is not None:
                now = self._clock()
                if now < self._next_try:
                    raise _RegistryDown(self._down)
                self._next_try = now + self.retry_s  # this caller is the one retry
        try:
            with self._database():
                answer = call()
        except RunError as exc:
            with self._lock:
                first = self._down is None
                self._down = exc
                self._next_try = self._clock() + self.retry_s
            if first:
                _log.warning(
                    "the prompt registry failed (%s): prompts it served before are served "
                    "stale, and it is tried again every %g s",
                    exc,
                    self.retry_s,
                )
            raise _RegistryDown(exc) from None
        with self._lock:
            recovered = self._down is not None
            self._down = None
            self._answered = True
        if recovered:
            _log.info("the prompt registry answers again: prompts are fresh")
        return answer

    @contextmanager
    def _database(self) -> Iterator[None]:
        """:func:`reaching`, and a damaged database the same way (a StorageError)."""
        from graphops.db.failures import storage_error

        try:
            with reaching(self.registry.url):
                yield
        except DBAPIError as exc:  # reaching maps OperationalError; a damaged file is not one
            error = storage_error(exc, self.registry.url)
            if not isinstance(error, RunError):
                raise
            raise error from None

    def _file_fallback(self, name: str) -> PromptFile | None:
        """The prompt file as it is (no registry number: it was never resolved here)."""
        try:
            return self.library.get(name)
        except ConfigurationError:
            return None  # no file either: the registry's error says more

    def _report_stale(self, prompt: PromptFile, error: RunError) -> None:
        """Count a stale answer and mark the asking node's span."""
        metrics = self._metrics
        if metrics is None:
            from graphops.observe.metrics import default_metrics

            metrics = self._metrics = default_metrics()
        metrics.prompt_stale.labels(prompt=prompt.name).inc()
        from langgraph.config import get_config

        try:
            config = get_config()
        except RuntimeError:  # not inside a node: no span to mark
            return
        from graphops.observe.handler import node_span
        from graphops.observe.semconv import PROMPT_NAME, PROMPT_VERSION

        span = node_span(config)
        span.set_attribute(PROMPT_STALE, True)
        span.add_event(
            PROMPT_STALE,
            {
                PROMPT_NAME: prompt.name,
                PROMPT_VERSION: prompt.ref.split("@", 1)[1],
                "error.type": type(error).__name__,
            },
        )
