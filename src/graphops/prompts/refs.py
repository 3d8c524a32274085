"""Prompt names, labels and version references: checked the same way everywhere.

A reference is what a user types after ``NAME@`` or ``NAME=``: a version number
(``3``) or a label (``production``); ``latest`` is the label every prompt has.
Kept free of heavy imports, so the command line can check its arguments cheaply.
"""

from __future__ import annotations

import getpass
import re

from graphops.errors import InvalidInputError

__all__ = [
    "LATEST",
    "PROMPT_NAME",
    "check_label",
    "check_name",
    "default_actor",
    "parse_ref",
]

LATEST = "latest"
"""The label every prompt has without storing it: its highest version."""

PROMPT_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
"""A prompt name: lower case, digits, ``-`` and ``_``; also the file name without ``.md``."""

_LABEL = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")


def default_actor() -> str:
    """Who a change is recorded as when nobody says: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "graphops"


def parse_ref(ref: str | int | None) -> int | str | None:
    """A version reference as given on a command line: a number, a label, or nothing."""
    if ref is None or isinstance(ref, int):
        if isinstance(ref, int) and ref < 1:
            raise InvalidInputError(f"prompt versions start at 1, not {ref}")
        return ref
    text = ref.strip()
    if text.isdigit():
        return parse_ref(int(text))
    return check_label(text)


def check_label(label: str) -> str:
    """``label`` if it is a valid label name, else an :class:`InvalidInputError`."""
    if not _LABEL.match(label):
        raise InvalidInputError(
            f"{label!r} is neither a version number nor a label (lower case, digits, - and _)"
        )
    return label


def check_name(name: str) -> str:
    """``name`` if it is a valid prompt name, else an :class:`InvalidInputError`."""
    if not PROMPT_NAME.match(name):
        raise InvalidInputError(f"{name!r} is not a prompt name (lower case, digits, - and _)")
    return name
