"""The confirmation convention of destructive commands (``runs prune``, ``db downgrade``)."""

from __future__ import annotations

import argparse
import io

import pytest

from graphops.commands.confirm import confirm
from graphops.errors import InvalidInputError


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def flags(*, yes: bool = False, dry_run: bool = False) -> argparse.Namespace:
    return argparse.Namespace(yes=yes, dry_run=dry_run)


@pytest.mark.parametrize("answer", ["y\n", "YES\n", " yes \n"])
def test_a_terminal_is_asked_and_yes_goes_ahead(
    capsys: pytest.CaptureFixture[str], answer: str
) -> None:
    assert confirm("will delete 3 runs", flags(), stdin=Terminal(answer)) is True
    out, err = capsys.readouterr()
    assert out == "will delete 3 runs\n" and err == "go ahead? [y/N] "


@pytest.mark.parametrize("answer", ["\n", "n\n", "nope\n", ""])
def test_anything_else_changes_nothing(capsys: pytest.CaptureFixture[str], answer: str) -> None:
    assert confirm("will delete 3 runs", flags(), stdin=Terminal(answer)) is False
    assert capsys.readouterr().out.endswith("cancelled: nothing deleted, nothing changed\n")


def test_off_a_terminal_it_needs_yes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidInputError, match="add --yes to go ahead"):
        confirm("will delete 3 runs", flags(), stdin=io.StringIO("y\n"))
    assert capsys.readouterr().out == "will delete 3 runs\n"  # shown, then refused
    assert confirm("will delete 3 runs", flags(yes=True), stdin=io.StringIO("")) is True


def test_a_dry_run_only_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert confirm("will delete 3 runs", flags(yes=True, dry_run=True), stdin=Terminal("y\n")) is (
        False
    )
    assert capsys.readouterr().out == (
        "will delete 3 runs\ndry run: nothing deleted, nothing changed\n"
    )
