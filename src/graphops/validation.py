"""The guard's input check: one definition of what a question may be.

The guard step applies it to every run; the CLI asks the same policy before it
loads a model, so a bad question fails fast. Neither keeps its own limit.
"""

from __future__ import annotations

import re

__all__ = ["input_problem"]

# Unicode's control characters (category Cc) but tab, LF and CR; and lone surrogates
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def input_problem(value: object, max_bytes: int, what: str = "the question") -> str | None:
    """Why ``value`` cannot be a question (None when it can).

    It must be text, not empty once white space is stripped, at most
    ``max_bytes`` bytes in UTF-8 (bytes, not characters: what a model and a
    wire are billed by, and what an 8 kB limit means to an operator), and free
    of control characters other than tab and line breaks (NUL, escape
    sequences and the like reach no prompt).
    """
    if not isinstance(value, str):
        return f"{what} is {type(value).__name__}, not text"
    if not value.strip():
        return f"{what} is empty"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return (
            f"{what} is {size} bytes long in UTF-8; the limit is {max_bytes} "
            "(GuardPolicy.max_input_bytes, GRAPHOPS_MAX_INPUT_BYTES)"
        )
    found = _CONTROL.search(value)
    if found is not None:
        return f"{what} contains a control character (U+{ord(found.group()):04X})"
    return None
