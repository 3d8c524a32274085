"""Input checks shared by the CLI, the reference graph and (later) the guard step."""

from __future__ import annotations

from graphops.errors import InvalidInputError

__all__ = ["validate_question"]


def validate_question(question: str, limit: int) -> str:
    """The question stripped of surrounding white space, or a clear :class:`InvalidInputError`."""
    question = question.strip()
    if not question:
        raise InvalidInputError("the question is empty")
    if len(question) > limit:
        raise InvalidInputError(
            f"the question is {len(question)} characters long; the limit is {limit} "
            "(GRAPHOPS_MAX_QUESTION_CHARS)"
        )
    if "\x00" in question:
        raise InvalidInputError("the question contains a NUL character")
    return question
