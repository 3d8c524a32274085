"""``graphops flags set|show|list|history|kill|revive`` on the embedded SQLite database."""

from __future__ import annotations

import json
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


def test_the_issue_s_example_makes_a_prompt_canary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "flags", "set", "answer", "v3=5", "v2=95", "--actor", "ana")
    assert code == 0 and "flag answer is at version 1: v3=5% v2=95% (default v2)" in out
    flag = flag_store(load_settings()).get("answer")
    assert flag is not None and dict(flag.variants) == {"v3": 3, "v2": 2}
    code, out, _ = run(capsys, "flags", "set", "answer", "v3=25", "v2=75", "--expect", "1")
    assert code == 0 and "version 2: v3=25% v2=75%" in out
    code, out, _ = run(capsys, "flags", "show", "answer", "--json")
    shown = json.loads(out)
    assert shown["weights"] == {"v3": 25, "v2": 75} and shown["version"] == 2
    code, out, _ = run(capsys, "flags", "list")
    assert code == 0 and out.startswith("answer") and "v3=25%" in out


def test_values_rules_kill_revive_and_history(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "flags", "set", "model.chat", "small=90", "big=10",
        "--value", 'small={"model": "smollm2-135m"}',
        "--value", 'big={"model": "gemini-2.5-flash"}',
        "--rule", "tenant=acme,globex:big@50",
        "--sticky-by", "tenant,user",
        "--description", "which chat model",
        "--actor", "ana",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "flags", "show", "model.chat")
    assert "rule 1: tenant in acme, globex -> big (50% of them)" in out
    assert '{"model": "gemini-2.5-flash"}' in out and "sticky by: tenant, user" in out
    code, out, _ = run(capsys, "flags", "kill", "model.chat", "--reason", "error spike")
    assert code == 0 and "every run gets 'small'" in out
    code, out, _ = run(capsys, "flags", "kill", "model.chat")
    assert code == 0 and "already killed" in out
    code, out, _ = run(capsys, "flags", "revive", "model.chat", "--actor", "bob")
    assert code == 0 and "revived (version 3)" in out
    code, out, _ = run(capsys, "flags", "history", "model.chat", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["action"], r["version"]) for r in rows] == [("revive", 3), ("kill", 2), ("set", 1)]
    assert rows[1]["detail"]["reason"] == "error spike" and rows[0]["actor"] == "bob"
    code, out, _ = run(capsys, "flags", "history")
    assert code == 0 and "error spike" in out and len(out.splitlines()) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set", "answer", "v3=5", "v2=90"], "weights sum to 95, not 100"),
        (["set", "answer", "v3", "v2=95"], "is not VARIANT=WEIGHT"),
        (["set", "answer", "v3=5", "v3=95"], "given twice"),
        (["set", "answer", "v3=x", "v2=95"], "is not VARIANT=WEIGHT"),
        (["set", "x'; DROP TABLE graphops_flags; --", "v1=100"], "is not a flag name"),
        (["set", "answer", "V3=100"], "not a variant name"),
        (["set", "answer", "v3=100", "--value", "v3={oops"], "is not JSON"),
        (["set", "answer", "v3=100", "--value", "v9=1"], "give it a weight too"),
        (["set", "answer", "v3=100", "--default", "v9"], "not one of its variants"),
        (["set", "answer", "v3=100", "--rule", "tenant:acme"], "ATTR=V1,V2:VARIANT"),
        (["set", "answer", "v3=100", "--rule", "tenant=acme:v9"], "unknown variant 'v9'"),
        (["set", "answer", "v3=100", "--rule", "tenant=a:v3", "--no-rules"], "contradict"),
        (["set", "answer", "v3=100", "--expect", "4"], "version 0, not 4"),
        (["show", "nothing"], "no flag 'nothing'"),
        (["kill", "nothing"], "no flag 'nothing'"),
        (["history", "--limit", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "flags", *argv)
    assert code != 0 and message in err, err
    assert flag_store(load_settings()).all() == {}
    assert flag_store(load_settings()).history() == []


def test_a_prompt_flag_must_name_versions_the_registry_has(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    from graphops.db import prepare
    from graphops.prompts.registry import PromptRegistry

    registry = PromptRegistry(prepare(load_settings()))
    text = (Path(__file__).resolve().parents[2] / "prompts" / "answer.md").read_text()
    registry.publish("answer", text, author="ci")
    registry.publish("answer", text + "\nBe brief.\n", author="ci")
    code, _, err = run(capsys, "flags", "set", "answer", "v3=5", "v2=95")
    assert code != 0 and "variant 'v3' cannot be served" in err and "no version 3" in err
    code, _, err = run(capsys, "flags", "set", "answer", "canary=5", "v2=95")
    assert code != 0 and "no label 'canary'" in err
    code, _, err = run(capsys, "flags", "set", "answer", "v1=5", "v2=95", "--value", "v1=[1]")
    assert code != 0 and "not a version number or a label" in err
    assert flag_store(load_settings()).all() == {}
    code, out, _ = run(capsys, "flags", "set", "answer", "v1=5", "v2=95")
    assert code == 0 and "version 1" in out
    code, out, _ = run(capsys, "flags", "set", "other", "v3=100")  # no such prompt: any value
    assert code == 0
