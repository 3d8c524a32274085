"""A reader that goes away (``graphops ... | head -1``) ends the command quietly, as cat does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "GRAPHOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("GRAPHOPS_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "graphops.cli", "flags", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command has printed anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, err
    assert "Traceback" not in err and err == ""
