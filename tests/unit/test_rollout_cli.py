"""``graphops rollout start|status|step|run|promote|abort`` on the embedded SQLite database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from graphops.cli import main
from graphops.flags.factory import flag_store
from graphops.settings import load_settings


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRAPHOPS_DATABASE_URL", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_start_status_step_abort_and_promote(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "flags", "set", "answer", "v1=100")[0] == 0
    code, out, _ = run(capsys, "rollout", "status")
    assert code == 0 and "no rollouts" in out
    code, out, err = run(
        capsys, "rollout", "start", "answer", "--to", "2", "--steps", "10,50,100",
        "--min-runs", "20", "--interval", "5m", "--actor", "ana",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("rollout of answer: v2 at 10% against v1 (steps 10, 50, 100;")
    flag = flag_store(load_settings()).get("answer")
    assert flag is not None and dict(flag.weights) == {"v1": 90, "v2": 10}
    code, out, _ = run(capsys, "rollout", "status", "answer")
    assert "running, canary at 10% (step 1 of 3)" in out
    assert "decision: wait: control has 0 of 20 runs at this step" in out
    code, out, _ = run(capsys, "rollout", "status", "--json")
    shown = json.loads(out)
    assert shown["state"] == "running" and shown["decision"]["action"] == "wait"
    code, out, _ = run(capsys, "rollout", "step")
    assert code == 0 and "decision: wait" in out
    code, out, err = run(capsys, "rollout", "start", "answer", "--to", "v2")
    assert code == 1 and "already has a running rollout" in err
    code, out, _ = run(capsys, "rollout", "abort", "answer", "--reason", "not today")
    assert code == 0 and "aborted, canary at 0%" in out
    code, out, _ = run(capsys, "rollout", "step")
    assert "no running rollouts" in out
    assert run(capsys, "rollout", "start", "answer", "--to", "v2")[0] == 0
    code, out, _ = run(capsys, "rollout", "promote", "answer")
    assert code == 0 and "promoted, canary at 100%" in out
    flag = flag_store(load_settings()).get("answer")
    assert flag is not None and flag.weights["v2"] == 100 and flag.default == "v2"
    history = [c.action for c in flag_store(load_settings()).history("answer")]
    assert history == [
        "rollout-promote", "rollout-start", "rollout-abort", "rollout-start", "set",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "answer", "--to", "v9"], "no variant 'v9'"),
        (["start", "nothing", "--to", "v2"], "no flag 'nothing'"),
        (["start", "answer", "--to", "v2", "--steps", "5,x"], "whole percents"),
        (["start", "answer", "--to", "v2", "--steps", "50,25,100"], "increasing"),
        (["start", "answer", "--to", "v2", "--steps", "100"], "at least one share below 100"),
        (["start", "answer", "--to", "v2", "--steps", "5,50"], "then 100"),
        (["start", "answer", "--to", "v2", "--interval", "soon"], "is not a duration"),
        (["start", "answer", "--to", "v2", "--min-runs", "3"], "at least 10 runs"),
        (["start", "answer", "--to", "v2", "--alpha", "0.9"], "between 0 and 0.5"),
        (["start", "answer", "--to", "Bad Name"], "not a variant name"),
        (["status", "answer"], "has no rollout"),
        (["promote", "answer"], "has no rollout"),
        (["abort", "x'; DROP TABLE graphops_rollouts; --"], "not a flag name"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(capsys, "flags", "set", "answer", "v1=90", "v2=10")[0] == 0
    assert run(capsys, "flags", "set", "answer", "v1=100", "v2=0")[0] == 0
    before = flag_store(load_settings()).get("answer")
    code, _, err = run(capsys, "rollout", *argv)
    assert code == 2 and message in err, err
    assert flag_store(load_settings()).get("answer") == before


def test_rollout_run_loops_until_it_is_stopped(tmp_path: Path) -> None:
    env = {**os.environ, "GRAPHOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("GRAPHOPS_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "graphops.cli", "rollout", "run", "--every", "1s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("looking at every running rollout every 1 s"), first
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_feedback_scores_a_stored_run(capsys: pytest.CaptureFixture[str]) -> None:
    from graphops.db import prepare
    from graphops.rollout.feedback import Feedback
    from tests.unit.test_rollout import World

    url = prepare(load_settings())
    world = World(url)
    world.app.invoke({"question": "q"}, {"configurable": {"thread_id": "t-9"}})
    [stored] = world.spans.runs(limit=1)
    code, out, err = run(capsys, "feedback", "t-9", "0.75", "--comment", "good", "--actor", "ana")
    assert code == 0, err
    assert out.strip() == f"run {stored.trace_id} scored 0.75"
    assert Feedback(url).scores([stored.trace_id]) == {stored.trace_id: [0.75]}
    for argv, message in (
        (["t-9", "lots"], "a number from 0 to 1"),
        (["t-9", "2"], "from 0 (bad) to 1 (good)"),
        (["nobody", "0.5"], "no stored run 'nobody'"),
    ):
        code, _, err = run(capsys, "feedback", *argv)
        assert code == 2 and message in err, err
    assert Feedback(url).scores([stored.trace_id]) == {stored.trace_id: [0.75]}
