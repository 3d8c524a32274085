"""Light spans: what the handler records on the request path, and what it hands to export.

An OpenTelemetry SDK span costs about 10 µs to start and end (sampler,
``BoundedAttributes`` behind a lock, processors' ``on_start``, a lock per span),
which is more than LangGraph spends on a no-op node. A :class:`LightSpan` is a
plain record with the same ``opentelemetry.trace.Span`` interface: a
``SpanContext`` with ids from the provider's id generator, start and end times,
an attributes dict and an event list. When it ends it becomes one SDK
``ReadableSpan``, with the provider's resource and the tracer's instrumentation
scope, handed to the provider's span processors' ``on_end``: a batch processor
only enqueues it, so exporters still work on their own thread, and graphops'
:class:`~graphops.observe.tracing.CountingBatchSpanProcessor` still drops and
counts when its queue is full.

What is exported is what the SDK would export: attribute values are cleaned by
the SDK's own rules when set (a list becomes a tuple, an invalid value is dropped
with the SDK's warning), events and exceptions are recorded as the SDK records
them, and status follows the SDK's rules. A light span is a child like any other:
put it in a context (``trace.set_span_in_context``) and the SDK tracer parents
its spans on it (LLM calls made inside a node, the embeddings wrapper).

Light spans are used only where they change nothing: :class:`SpanFactory` falls
back on the SDK tracer when the sampler is not the SDK's default always-on one
(``OTEL_TRACES_SAMPLER``), when the SDK's own span metrics are on, or when the
provider was not built by :class:`~graphops.observe.telemetry.Telemetry` (a
provider passed in may carry processors that need ``on_start``).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

__all__ = ["LightSpan", "SpanFactory"]

_log = logging.getLogger("opentelemetry.sdk.trace")  # the SDK's own warnings, by its name

_DEFAULT = TraceFlags(TraceFlags.DEFAULT)
_RANDOM = TraceFlags(TraceFlags.RANDOM_TRACE_ID)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSET = Status(StatusCode.UNSET)
_PLAIN = frozenset({str, bool, int, float})


class _Exporter:
    """What every light span of one tracer shares: ids, resource, scope, limits, processors."""

    __slots__ = (
        "event_limit",
        "id_generator",
        "info",
        "max_attributes",
        "max_event_attributes",
        "max_events",
        "max_link_attributes",
        "max_links",
        "max_value_len",
        "processor",
        "random_ids",
        "resource",
        "scope",
    )

    def __init__(self, provider: TracerProvider, tracer: Any, limits: SpanLimits) -> None:
        self.id_generator = provider.id_generator
        self.random_ids = bool(self.id_generator.is_trace_id_random())
        self.resource = provider.resource
        self.processor = tracer.span_processor
        self.info = tracer.instrumentation_info
        self.scope: InstrumentationScope | None = getattr(tracer, "_instrumentation_scope", None)
        self.max_attributes = limits.max_span_attributes
        self.max_value_len = limits.max_span_attribute_length
        self.max_event_attributes = limits.max_event_attributes
        self.event_limit = limits.max_attribute_length
        self.max_events = limits.max_events
        self.max_links = limits.max_links
        self.max_link_attributes = limits.max_link_attributes

    def cleaned(self, key: str, value: Any) -> tuple[bool, Any]:
        """``value`` as the SDK would store it under ``key``: (kept, value)."""
        kind = type(value)
        if kind in _PLAIN and (kind is not str or self.max_value_len is None) and key:
            return True, value
        # the SDK's own cleaning (and its warning for what it drops)
        one = BoundedAttributes(None, {key: value}, max_value_len=self.max_value_len)
        return (key in one), one.get(key)

    def event(self, name: str, attributes: types.Attributes, timestamp: int | None) -> Event:
        bounded = BoundedAttributes(
            self.max_event_attributes,
            attributes,
            max_value_len=self.event_limit,
            immutable=True,
        )
        return Event(name=name, attributes=bounded, timestamp=timestamp)


class LightSpan(trace.Span, ReadableSpan):
    """A span recorded as plain data, readable as the SDK's ``ReadableSpan`` once ended.

    Like the SDK's own span it is both the live span and what processors read; the
    SDK copies itself into a new ``ReadableSpan`` when it ends, this one hands
    itself over, and refuses every change after ``end()`` as the SDK does.
    """

    __slots__ = ("_exporter",)

    def __init__(
        self,
        exporter: _Exporter,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        # ReadableSpan's fields, set here rather than through its __init__ (hot path)
        self._exporter = exporter
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._resource = exporter.resource
        self._instrumentation_info = exporter.info
        self._instrumentation_scope = exporter.scope
        self._status = _UNSET
        self._events: Sequence[Event] = ()
        self._links: Sequence[Link] = ()
        self._end_time: int | None = None
        own: dict[str, Any] = {}
        if attributes:
            plain = exporter.max_value_len is None
            for key, value in attributes.items():
                kind_of = type(value)
                if (kind_of in _PLAIN and (plain or kind_of is not str)) and key:
                    own[key] = value
                else:
                    kept, value = exporter.cleaned(key, value)
                    if kept:
                        own[key] = value
        self._attributes: Mapping[str, Any] = own
        self._start_time: int | None = time_ns()

    # ------------------------------------------------------------ the Span interface
    def get_span_context(self) -> SpanContext:
        return cast(SpanContext, self._context)  # always set by __init__

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            _log.warning("Setting attribute on ended span.")
            return
        kept, value = self._exporter.cleaned(key, value)
        if kept:
            attributes = self._own
            if key in attributes:  # the SDK moves a key set again to the end
                del attributes[key]
            attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            _log.warning("Setting attribute on ended span.")
            return
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            _log.warning("Calling add_event on an ended span.")
            return
        event = self._exporter.event(name, attributes, timestamp)
        if isinstance(self._events, list):
            self._events.append(event)
        else:
            self._events = [event]

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling add_link on an ended span.")
            return
        if not context or not (context.is_valid or attributes or context.trace_state):
            return  # what the SDK takes for an invalid link
        bounded = BoundedAttributes(
            self._exporter.max_link_attributes,
            attributes,
            max_value_len=self._exporter.event_limit,
            immutable=True,
        )
        if isinstance(self._links, list):
            self._links.append(Link(context, bounded))
        else:
            self._links = [Link(context, bounded)]

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            _log.warning("Calling update_name on an ended span.")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling set_status on an ended span.")
            return
        # the SDK's rules: OK is final, UNSET is never set
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _log.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """The SDK's exception event (its traceback formatted now, while it is this one)."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        exporter = self._exporter
        # what the SDK's containers would have evicted, evicted as they do
        if exporter.max_attributes is not None and len(self._attributes) > exporter.max_attributes:
            self._attributes = BoundedAttributes(
                exporter.max_attributes, self._attributes, max_value_len=exporter.max_value_len
            )
        if exporter.max_events is not None and len(self._events) > exporter.max_events:
            self._events = BoundedList.from_seq(exporter.max_events, self._events)
        if exporter.max_links is not None and len(self._links) > exporter.max_links:
            self._links = BoundedList.from_seq(exporter.max_links, self._links)
        exporter.processor.on_end(self)

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        """As the SDK span: an exception leaving the block is recorded and sets ERROR."""
        if exc_val is not None and self._end_time is None:
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    @property
    def _own(self) -> dict[str, Any]:
        attributes = self._attributes
        assert isinstance(attributes, dict)  # until end() it is the span's own dict
        return attributes

    def __repr__(self) -> str:
        return f'LightSpan(name="{self._name}", context={self._context})'


def _light_spans_match(provider: TracerProvider, tracer: Any) -> bool:
    """Whether a light span exports exactly what this tracer's SDK span would."""
    sampler = getattr(tracer, "sampler", None)
    if sampler is not sampling.DEFAULT_ON and sampler is not sampling.ALWAYS_ON:
        return False  # a sampler that may drop or annotate spans: let the SDK decide
    internal = os.environ.get(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, "")
    if internal.strip().lower() == "true":
        return False  # the SDK counts its own spans: only its spans are counted
    enabled = getattr(tracer, "_is_enabled", None)
    return callable(enabled) and bool(enabled()) and hasattr(tracer, "span_processor")


class SpanFactory:
    """Starts the handler's spans: light ones when they export the same, else the SDK's."""

    __slots__ = ("_exporter", "_parent_based", "light", "tracer")

    def __init__(self, provider: TracerProvider, tracer: trace.Tracer, *, light: bool) -> None:
        self.tracer = tracer
        self.light = light and _light_spans_match(provider, tracer)
        self._parent_based = getattr(tracer, "sampler", None) is sampling.DEFAULT_ON
        self._exporter = (
            _Exporter(provider, tracer, getattr(tracer, "_span_limits", None) or SpanLimits())
            if self.light
            else None
        )

    def start(
        self,
        name: str,
        parent: trace.Span | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Span:
        """A started span named ``name`` under ``parent``.

        Without a parent, as the SDK tracer does, under the span current in the
        caller's context (a run invoked inside a traced request joins its trace),
        else in a new trace.
        """
        exporter = self._exporter
        if exporter is None:
            parent_in = trace.set_span_in_context(parent) if parent is not None else None
            return self.tracer.start_span(name, context=parent_in, kind=kind, attributes=attributes)
        ids = exporter.id_generator
        if type(parent) is LightSpan:  # the common case: a node under the run, and so on
            above = cast(SpanContext, parent._context)
            context = SpanContext(
                above.trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=above.trace_flags,  # sampled, and random as the parent
                trace_state=above.trace_state,
            )
            return LightSpan(exporter, name, context, above, kind, attributes)
        if parent is None:
            parent = trace.get_current_span()
        parent_context: SpanContext | None = parent.get_span_context()
        if parent_context is not None and parent_context.is_valid:
            trace_id = parent_context.trace_id
            flags = parent_context.trace_flags
            sampled = flags.sampled or not self._parent_based
            random_ids = flags.random_trace_id
            trace_state = parent_context.trace_state
        else:
            parent_context = None
            trace_id = ids.generate_trace_id()
            sampled = True
            random_ids = exporter.random_ids
            trace_state = None
        if sampled:
            flags = _SAMPLED_RANDOM if random_ids else _SAMPLED
        else:  # under a span its sampler dropped, as ParentBased(ALWAYS_ON) does
            flags = _RANDOM if random_ids else _DEFAULT
        context = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=trace_state,
        )
        if not sampled:
            return trace.NonRecordingSpan(context)
        return LightSpan(exporter, name, context, parent_context, kind, attributes)
