"""An OpenFeature provider backed by the flag table: the same flags through the standard SDK.

An application that reads flags through OpenFeature
(``api.set_provider(GraphopsProvider(flags))``, then
``api.get_client().get_string_value("prompt.answer", "v1", context)``) gets
exactly the variant a graphops run with that context gets: the provider
evaluates the same snapshot with the same sticky hashing
(:mod:`graphops.flags.evaluate`).

The evaluation context's attributes are the run context (``user``, ``tenant``,
``thread``, or any attribute a rule names); its ``targeting_key``, OpenFeature's
stickiness key, stands for ``user`` when the attributes give none. The result
carries the variant, the reason (``DISABLED``, ``TARGETING_MATCH``, ``SPLIT``,
``DEFAULT``, or ``STALE`` while the flag store is down) and the flag's stored
version in ``flag_metadata``. A missing flag, a variant value of the wrong type
or a store that never answered are OpenFeature errors, which the SDK turns into
the caller's default value with an error code and reason ``ERROR``.

The ``*_async`` methods are the SDK's, which call these: a resolution reads the
flag table only when the snapshot is older than the resolver's ``refresh_s``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, GeneralError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from graphops.errors import GraphopsError
from graphops.flags.resolver import Flags

__all__ = ["GraphopsProvider"]

_T = TypeVar("_T")


class GraphopsProvider(AbstractProvider):
    """OpenFeature's view of a :class:`~graphops.flags.resolver.Flags` resolver."""

    def __init__(self, flags: Flags) -> None:
        super().__init__()
        self.flags = flags

    def get_metadata(self) -> Metadata:
        return Metadata(name="graphops")

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, evaluation_context, _exactly(bool), "a boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, evaluation_context, _exactly(str), "a string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, evaluation_context, _exactly(int), "an integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, evaluation_context, _number, "a number")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Mapping[str, Any] | Sequence[Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Mapping[str, Any] | Sequence[Any]]:
        return self._resolve(flag_key, evaluation_context, _structure, "an object or a list")

    def _resolve(
        self,
        flag_key: str,
        evaluation_context: EvaluationContext | None,
        convert: Callable[[Any], _T | None],
        kind: str,
    ) -> FlagResolutionDetails[_T]:
        try:
            assignment = self.flags.resolve(flag_key, _context(evaluation_context))
        except GraphopsError as exc:  # a bad name, a store that never answered
            raise GeneralError(str(exc)) from None
        if assignment is None:
            raise FlagNotFoundError(f"no flag {flag_key!r} in the flag table")
        value = convert(assignment.value)
        if value is None:
            raise TypeMismatchError(
                f"flag {flag_key!r}: variant {assignment.variant!r} is "
                f"{type(assignment.value).__name__}, not {kind}"
            )
        return FlagResolutionDetails(
            value=value,
            reason=Reason.STALE if assignment.stale else Reason(assignment.reason),
            variant=assignment.variant,
            flag_metadata={"version": assignment.version},
        )


def _context(evaluation_context: EvaluationContext | None) -> dict[str, Any]:
    if evaluation_context is None:
        return {}
    context = {k: v for k, v in evaluation_context.attributes.items() if v is not None}
    if evaluation_context.targeting_key and "user" not in context:
        context["user"] = evaluation_context.targeting_key
    return context


def _exactly(kind: type[_T]) -> Callable[[Any], _T | None]:
    def convert(value: Any) -> _T | None:
        # JSON's true is not the integer 1 here, nor 1 the boolean true
        return value if type(value) is kind else None

    return convert


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _structure(value: Any) -> Mapping[str, Any] | Sequence[Any] | None:
    return value if isinstance(value, dict | list) else None
