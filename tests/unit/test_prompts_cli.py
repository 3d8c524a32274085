"""``graphops prompts``: sync, list, show, diff, label, rollback and log on the embedded SQLite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graphops.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path / "data"))
    prompts = Path(shutil.copytree(ROOT / "prompts", tmp_path / "prompts"))
    monkeypatch.setenv("GRAPHOPS_PROMPTS_DIR", str(prompts))
    return prompts


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_prompt_release_from_sync_to_rollback(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    code, out, _ = run(capsys, "prompts", "list")
    assert (code, out.strip()) == (
        0,
        "the registry is empty: 'graphops prompts sync' publishes the prompt files",
    )
    code, out, _ = run(capsys, "prompts", "sync", "--label", "production", "--actor", "ci")
    assert code == 0
    assert "answer: v1 (new, production → v1)" in out.splitlines()

    answer = isolated / "answer.md"
    answer.write_text(answer.read_text().replace("Be brief", "Be very brief"), encoding="utf-8")
    code, out, _ = run(capsys, "prompts", "sync", "--actor", "ci")
    assert "answer: v2 (new)" in out.splitlines()
    assert "route: v1 (unchanged)" in out.splitlines()

    code, out, _ = run(capsys, "prompts", "list")
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert lines["answer"] == ["2", "production=v1"]

    code, out, _ = run(capsys, "prompts", "diff", "answer", "production")
    assert "-Passages" not in out
    assert any(line.startswith("+") and "Be very brief" in line for line in out.splitlines())
    assert out.splitlines()[0] == "--- answer@1"

    code, out, _ = run(capsys, "prompts", "label", "answer", "2", "production", "--actor", "ana")
    assert out.strip() == "answer: production → v2 (was v1)"
    code, out, _ = run(capsys, "prompts", "show", "answer@production")
    assert out.splitlines()[0].startswith("# answer v2 by ci at ")
    assert "[production]" in out.splitlines()[0]
    assert "Be very brief" in out

    code, out, _ = run(capsys, "prompts", "rollback", "answer", "--actor", "bob")
    assert out.strip() == "answer: production rolled back v2 → v1"
    code, out, _ = run(capsys, "prompts", "log", "answer")
    log = out.splitlines()
    assert "bob" in log[0] and "rolled back production → v1 (was v2)" in log[0]
    assert "ana" in log[1] and "moved production → v2 (was v1)" in log[1]
    assert "published v2" in log[2]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("prompts", "show", "nope"), "no prompt 'nope' in the registry"),
        (("prompts", "show", "answer@7"), "has no version 7"),
        (("prompts", "show", "Answer"), "not a prompt name"),
        (("prompts", "label", "answer", "1", "latest"), "cannot be moved"),
        (("prompts", "rollback", "answer"), "has no earlier version"),
        (("prompts", "log", "--limit", "0"), "--limit must be at least 1"),
        (("prompts",), "the following arguments are required"),
        (("replay", "t1", "--prompt", "answer=2"), "go with --rerun"),
        (("replay", "t1", "--rerun", "--prompt", "answer"), "--prompt takes NAME=VERSION"),
        (("replay", "t1", "--rerun", "--prompt", "answer=0"), "versions start at 1"),
    ],
)
def test_bad_prompt_commands_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    assert run(capsys, "prompts", "sync", "--label", "production")[0] == 0
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert err.count("\n") == 1
    assert out == ""


def test_sync_without_prompt_files_says_where_it_looked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GRAPHOPS_PROMPTS_DIR", str(tmp_path / "empty"))
    code, _, err = run(capsys, "prompts", "sync")
    assert code == 2
    assert "no prompt files (*.md) in" in err


def test_a_bad_prompt_label_setting_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_PROMPT_LABEL", "Prod!")
    code, _, err = run(capsys, "prompts", "list")
    assert code == 2
    assert "GRAPHOPS_PROMPT_LABEL" in err
