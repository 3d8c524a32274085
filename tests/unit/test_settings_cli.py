"""Bad settings stop every command at start, in one line (a real ``graphops`` subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


@pytest.mark.parametrize("command", [["runs"], ["prompts", "list"], ["db", "current"]])
@pytest.mark.parametrize(
    ("variable", "value"),
    [("GRAPHOPS_TRACES_EXPORTER", "jaeger"), ("GRAPHOPS_DATA_DIR", "")],
)
def test_every_command_refuses_bad_settings_at_start(
    tmp_path: Path, command: list[str], variable: str, value: str
) -> None:
    env = {**os.environ, "GRAPHOPS_DATA_DIR": str(tmp_path / "data"), variable: value}
    done = subprocess.run(
        [GRAPHOPS, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"graphops: error: invalid settings: {variable}: ")
    assert not list(tmp_path.iterdir())  # nothing written, not even in the current directory
