"""The command line's failure paths: one line on stderr, the right exit code, no traceback.

None of these load a model: every bad input is refused before that.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from graphops.cli import main


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("ask", ""), "the question is empty"),
        (("ask", "   \n "), "the question is empty"),
        (("ask", "x" * 100_000), "100000 bytes long in UTF-8; the limit is 8192"),
        (("ask", "what\x1b[2J?"), "contains a control character (U+001B)"),
        (("ingest", "/no/such/folder"), "no such file or folder"),
        (("ingest", "ftp://host/file.md"), "only http:// and https://"),
        (("frobnicate",), "invalid choice"),
        (("ask",), "ask needs a question (or --thread ID --resume)"),
        (("ask", "--resume"), "--resume continues a thread: give --thread ID and no question"),
        (("ask", "--thread", "t", "--resume", "why?"), "give --thread ID and no question"),
        (("ask", "--stream", "--json", "why?"), "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("graphops: error: ")
    assert fragment in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert out == ""


def test_bad_setting_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHOPS_TOP_K", "lots")
    code, _, err = run(capsys, "ask", "why?")
    assert code == 2
    assert "GRAPHOPS_TOP_K" in err


def test_missing_api_key_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("GRAPHOPS_EMBEDDINGS_MODEL", "openai:text-embedding-3-small")
    code, _, err = run(capsys, "ask", "why?")
    assert code == 2
    assert (
        err
        == "graphops: error: openai:text-embedding-3-small needs an API key: set OPENAI_API_KEY\n"
    )


def test_non_utf8_file_is_a_run_error(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    bad = isolated / "bad.md"
    bad.write_bytes(b"# Caf\xe9\n")
    code, _, err = run(capsys, "ingest", str(bad))
    assert code == 1
    assert "not UTF-8" in err
    assert not (isolated / "data" / "index").exists()


def test_question_from_stdin_is_validated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
    code, _, err = run(capsys, "ask", "-")
    assert code == 2
    assert "not UTF-8" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("graphops 0.")


def test_log_lines_go_to_stderr_as_json_when_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import logging

    from graphops.observe.logs import logger

    monkeypatch.setenv("GRAPHOPS_LOG_LEVEL", "INFO")
    try:
        run(capsys, "ask", "")  # configures logging, then fails validation
        logger.info("probe", extra={"graphops": {"node": "n"}})
        err = capsys.readouterr().err.strip().splitlines()
        line = json.loads(err[-1])
        assert line["event"] == "probe" and line["node"] == "n" and line["level"] == "info"
        run(capsys, "ask", "")  # configuring twice keeps one handler
        assert len([h for h in logger.handlers if isinstance(h, logging.StreamHandler)]) == 1
    finally:
        logger.setLevel(logging.WARNING)
