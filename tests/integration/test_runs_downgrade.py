"""``graphops db downgrade`` says what it will drop and asks first: real subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text

from graphops.db import current, engine_for
from tests.integration.support import ROOT, graphops_on

CACHE = ("graphops_cache_entries", "graphops_cache_docs", "graphops_cache_feedback")
FLAGS = ("graphops_flags", "graphops_flag_variants", "graphops_flag_rules")


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

    first = graphops(database, tmp_path, "db", "downgrade")  # one step: the rollouts
    assert first.returncode == 2 and "--yes" in first.stderr
    assert "0005 → 0004" in first.stdout and "graphops_rollouts (0 rows)" in first.stdout
    assert "graphops_flags" not in first.stdout
    rollouts = graphops(database, tmp_path, "db", "downgrade", "--yes")
    assert rollouts.returncode == 0, rollouts.stderr
    assert rollouts.stdout.splitlines()[-1] == "schema 0004 (this graphops: 0005)"

    refused = graphops(database, tmp_path, "db", "downgrade")
    assert refused.returncode == 2
    assert refused.stderr.startswith("graphops: error: ") and "--yes" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "0004 → 0003" in refused.stdout  # one step by default: the flags
    for table in FLAGS:
        assert f"{table} (0 rows)" in refused.stdout
    assert "column graphops_prompt_audit.kind" in refused.stdout
    assert "graphops_cache_" not in refused.stdout
    assert "graphops_prompt_versions" not in refused.stdout
    assert "graphops_spans" not in refused.stdout
    assert current(database) == "0004" and rows(database, "graphops_prompt_versions") == versions

    past = graphops(database, tmp_path, "db", "downgrade", "0001")  # past the prompt registry
    assert past.returncode == 2
    assert past.stderr.startswith("graphops: error: ") and "--yes" in past.stderr
    assert past.stderr.count("\n") == 1
    assert "0004 → 0003" in past.stdout
    assert "0003 → 0002" in past.stdout and "0002 → 0001" in past.stdout
    assert f"graphops_prompt_versions ({versions} rows)" in past.stdout
    assert "graphops_prompt_labels (0 rows)" in past.stdout
    assert "graphops_prompt_audit (" in past.stdout
    assert "graphops_spans" not in past.stdout
    assert current(database) == "0004" and rows(database, "graphops_prompt_versions") == versions

    dry = graphops(database, tmp_path, "db", "downgrade", "base", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "0004 → base" in dry.stdout and "graphops_spans (0 rows)" in dry.stdout
    assert "dry run: nothing deleted, nothing changed" in dry.stdout
    assert current(database) == "0004"

    flags = graphops(database, tmp_path, "db", "downgrade", "--yes")
    assert flags.returncode == 0, flags.stderr
    assert flags.stdout.splitlines()[-1] == "schema 0003 (this graphops: 0005)"
    assert current(database) == "0003" and rows(database, "graphops_prompt_versions") == versions

    cache = graphops(database, tmp_path, "db", "downgrade", "--yes")
    assert cache.returncode == 0, cache.stderr
    assert cache.stdout.splitlines()[-1] == "schema 0002 (this graphops: 0005)"
    assert current(database) == "0002" and rows(database, "graphops_prompt_versions") == versions

    again = graphops(database, tmp_path, "db", "downgrade")  # now the prompt registry: asks
    assert again.returncode == 2
    assert again.stderr.startswith("graphops: error: ") and "--yes" in again.stderr
    assert "0002 → 0001" in again.stdout and "0003 →" not in again.stdout
    assert f"graphops_prompt_versions ({versions} rows)" in again.stdout
    assert "graphops_spans" not in again.stdout
    assert current(database) == "0002" and rows(database, "graphops_prompt_versions") == versions

    done = graphops(database, tmp_path, "db", "downgrade", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "schema 0001 (this graphops: 0005)"
    assert current(database) == "0001"

    nothing = graphops(database, tmp_path, "db", "downgrade", "0001")
    assert nothing.returncode == 0, nothing.stderr  # nothing to drop: nothing to confirm
    assert nothing.stdout.splitlines()[-1] == "schema 0001 (this graphops: 0005)"

    misplaced = graphops(database, tmp_path, "db", "upgrade", "--yes")
    assert misplaced.returncode == 2 and "--yes is for 'graphops db downgrade'" in misplaced.stderr
    assert graphops(database, tmp_path, "db", "upgrade").returncode == 0
