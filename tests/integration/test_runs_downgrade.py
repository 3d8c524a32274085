"""``graphops db downgrade`` says what it will drop and asks first: real subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text

from graphops.db import current, engine_for
from tests.integration.support import ROOT, graphops_on


def graphops(url: str, data: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``graphops`` on ``url`` with the repository's prompts, stdin not a terminal."""
    return graphops_on(url, data, *argv, GRAPHOPS_PROMPTS_DIR=str(ROOT / "prompts"))


def rows(url: str, table: str) -> int:
    with engine_for(url).connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_downgrade_shows_what_it_drops_and_needs_yes(database: str, tmp_path: Path) -> None:
    synced = graphops(database, tmp_path, "prompts", "sync", "--actor", "ci")
    assert synced.returncode == 0, synced.stderr
    versions = rows(database, "graphops_prompt_versions")
    assert versions == 5

    refused = graphops(database, tmp_path, "db", "downgrade")
    assert refused.returncode == 2
    assert refused.stderr.startswith("graphops: error: ") and "--yes" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "0002 → 0001" in refused.stdout
    assert f"graphops_prompt_versions ({versions} rows)" in refused.stdout
    assert "graphops_prompt_labels (0 rows)" in refused.stdout
    assert "graphops_prompt_audit (" in refused.stdout
    assert "graphops_spans" not in refused.stdout
    assert current(database) == "0002" and rows(database, "graphops_prompt_versions") == versions

    dry = graphops(database, tmp_path, "db", "downgrade", "base", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "0002 → base" in dry.stdout and "graphops_spans (0 rows)" in dry.stdout
    assert "dry run: nothing deleted, nothing changed" in dry.stdout
    assert current(database) == "0002"

    done = graphops(database, tmp_path, "db", "downgrade", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "schema 0001 (this graphops: 0002)"
    assert current(database) == "0001"

    nothing = graphops(database, tmp_path, "db", "downgrade", "0001")
    assert nothing.returncode == 0, nothing.stderr  # nothing to drop: nothing to confirm
    assert nothing.stdout.splitlines()[-1] == "schema 0001 (this graphops: 0002)"

    misplaced = graphops(database, tmp_path, "db", "upgrade", "--yes")
    assert misplaced.returncode == 2 and "--yes is for 'graphops db downgrade'" in misplaced.stderr
    assert graphops(database, tmp_path, "db", "upgrade").returncode == 0
