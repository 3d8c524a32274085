from __future__ import annotations

from pathlib import Path

import pytest

from graphops.errors import ConfigurationError
from graphops.prompts import PromptLibrary, parse_prompt

ROOT = Path(__file__).resolve().parents[2]

GOOD = """---
description: test
variables: [question]
---
[system]
Answer {{"json": true}}.
[user]
{question}
"""


def test_parse_prompt_messages_and_variables() -> None:
    prompt = parse_prompt("t", GOOD)
    assert prompt.messages == (("system", 'Answer {{"json": true}}.'), ("user", "{question}"))
    rendered = prompt.to_chat_prompt().invoke({"question": "why?"}).to_messages()
    assert [m.text for m in rendered] == ['Answer {"json": true}.', "why?"]
    assert len(prompt.content_hash) == 12


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[user]\nhi", "front matter"),
        ("---\n: [\n---\n[user]\nhi", "bad front matter"),
        ("---\nvariables: []\n---\nstray\n[user]\nhi", "before the first"),
        ("---\nvariables: []\n---\n", "no \\[system\\]"),
        ("---\nvariables: [question]\n---\n[user]\n{questoin}", "declares variables"),
        ("---\nvariables: []\n---\n[user]\n{unclosed", "bad template"),
    ],
)
def test_bad_prompt_files_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        parse_prompt("t", text)


def test_library_lists_and_reloads(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    library = PromptLibrary(tmp_path)
    assert library.names() == ["a"]
    first = library.get("a")
    assert library.get("a") is first
    (tmp_path / "a.md").write_text(GOOD.replace("test", "changed"))
    import os

    os.utime(tmp_path / "a.md", (1, 1))
    assert library.get("a").description == "changed"


def test_missing_prompt_lists_known_ones(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    with pytest.raises(ConfigurationError, match=r"no prompt 'b'.*found: a.*GRAPHOPS_PROMPTS_DIR"):
        PromptLibrary(tmp_path).get("b")
    with pytest.raises(ConfigurationError, match="not a prompt name"):
        PromptLibrary(tmp_path).get("../etc/passwd")


def test_every_shipped_prompt_parses() -> None:
    library = PromptLibrary(ROOT / "prompts")
    assert set(library.names()) >= {"route", "respond", "grade", "rewrite", "answer"}
    for name in library.names():
        assert library.get(name).messages
