"""Runtime state never belongs in the repository: ``langgraph dev`` rewrites its files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _git(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture(autouse=True)
def _in_a_git_work_tree() -> None:
    if shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree").returncode:
        pytest.skip("not a git work tree")


@pytest.mark.parametrize("folder", [".langgraph_api", ".graphops"])
def test_runtime_state_is_untracked_and_ignored(folder: str) -> None:
    assert _git("ls-files", "--", folder).stdout == ""
    ignored = _git("check-ignore", "--no-index", f"{folder}/.langgraph_checkpoint.1.pckl")
    assert ignored.returncode == 0, ignored.stderr
