"""A damaged database file or an unusable data folder (case 5 of issue 9).

Each of ``ask``, ``runs``, ``replay``, ``db current`` and ``prompts list`` ends with
one ``graphops: error:`` line naming the file or folder and what to do, exits
non-zero, and leaves the file as it was (byte for byte).
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from graphops.db import engine_for, upgrade
from tests.integration.support import ROOT, run_graphops

COMMANDS = [
    ["ask", "How do I ingest a URL?"],
    ["runs"],
    ["replay", "some-thread"],
    ["db", "current"],
    ["prompts", "list"],
]


def cli(data: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "GRAPHOPS_DATA_DIR": str(data),
        "GRAPHOPS_PROMPTS_DIR": str(ROOT / "prompts"),
        "GRAPHOPS_CORPUS": str(ROOT / "docs"),
    }
    return run_graphops(*argv, env=environment, cwd=ROOT)


def refused(done: subprocess.CompletedProcess[str], code: int, *named: str) -> str:
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("graphops: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for text in named:
        assert text in done.stderr
    return done.stderr


def a_real_database(data: Path) -> Path:
    """graphops' default database with the prompt registry filled in."""
    path = data / "graphops.sqlite"
    url = f"sqlite:///{path}"
    upgrade(url)
    assert cli(data, "prompts", "sync").returncode == 0
    engine_for(url).dispose()  # the last connection closed: the WAL is written back, removed
    assert sorted(p.name for p in data.iterdir()) == ["graphops.sqlite"]
    return path


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_database_file_is_one_line_and_left_untouched(
    tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "graphops.sqlite"
    if damage == "random bytes":
        path.write_bytes(random.Random(9).randbytes(16_384))
    else:
        whole = a_real_database(data).read_bytes()
        assert len(whole) > 8192
        path.write_bytes(whole[: len(whole) // 2])
    before = path.read_bytes()
    for argv in COMMANDS:
        message = refused(cli(data, *argv), 1, f"the database {path} ")
        assert "move it away" in message, message
        assert path.read_bytes() == before, argv
    assert sorted(p.name for p in data.iterdir()) == ["graphops.sqlite"]


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder\n")
    for argv in COMMANDS:
        message = refused(
            cli(data, *argv), 2, f"the folder {data} for graphops' database is a file"
        )
        assert data.read_text() == "not a folder\n", argv
        assert message.endswith(
            "point GRAPHOPS_DATA_DIR (or GRAPHOPS_DATABASE_URL) at a folder\n"
        ), message


def test_a_data_dir_that_cannot_be_created_is_one_line() -> None:
    for argv in COMMANDS:
        refused(
            cli(Path("/proc/nope"), *argv),
            2,
            "cannot create the folder /proc/nope for graphops' database (No such file or "
            "directory): point GRAPHOPS_DATA_DIR (or GRAPHOPS_DATABASE_URL) at a folder graphops "
            "can write",
        )
