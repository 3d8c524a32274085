"""``graphops cache stats|purge``, and ``graphops ingest`` purging what a changed document made.

On the embedded SQLite under a temporary ``GRAPHOPS_DATA_DIR``; ingest embeds with
the fake :class:`~graphops.models.HashEmbeddings`, never the local model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from graphops.cache.factory import answer_store
from graphops.cache.store import AnswerStore, CacheEntry
from graphops.cli import main
from graphops.models import HashEmbeddings
from graphops.settings import load_settings


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRAPHOPS_DATABASE_URL", raising=False)
    monkeypatch.setattr("graphops.models.make_embeddings", lambda *_a, **_k: HashEmbeddings())
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def store() -> AnswerStore:
    return answer_store(load_settings())


def put(key: str, *docs: str, tenant: str | None = "acme", **fields: Any) -> None:
    fields.setdefault("created", time.time())
    store().put(CacheEntry(key, "p1", tenant, f"{key}?", {"answer": key}, docs, **fields))


def keys(*candidates: str) -> list[str]:
    now = time.time()
    found = store()
    return [key for key in candidates if found.get(key, now) is not None]


def test_stats_count_live_and_expired_entries_per_tenant(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    code, out, _ = run(capsys, "cache", "stats")
    database = f"sqlite:///{isolated / 'data' / 'graphops.sqlite'}"
    assert (code, out) == (
        0,
        f"answer cache in {database}: 0 live entries, 0 expired; 0 documents cited\n",
    )
    put("k1", "docs/a.md", "docs/b.md")
    put("k2", "docs/b.md", tenant="globex")
    put("k3", "docs/c.md", tenant=None)
    put("k4", "docs/d.md", expires=time.time() - 1)
    code, out, _ = run(capsys, "cache", "stats")
    assert out.splitlines() == [
        f"answer cache in {database}: 3 live entries, 1 expired; 3 documents cited",
        f"  {'tenant':<32} entries",
        f"  {'-':<32}       1",
        f"  {'acme':<32}       1",
        f"  {'globex':<32}       1",
    ]
    code, out, _ = run(capsys, "cache", "stats", "--json")
    assert json.loads(out) == {
        "entries": 3,
        "expired": 1,
        "tenants": {"acme": 1, "globex": 1, "-": 1},
        "docs": 3,
    }
    code, out, _ = run(capsys, "cache", "stats", "--tenant", "acme", "--json")
    assert json.loads(out) == {
        "tenant": "acme",
        "entries": 1,
        "expired": 1,
        "tenants": {"acme": 1},
        "docs": 2,
    }


def test_purge_deletes_what_every_filter_matches(capsys: pytest.CaptureFixture[str]) -> None:
    put("k1", "docs/a.md")
    put("k2", "docs/b.md")
    put("k3", "docs/a.md", tenant="globex")
    put("k4", "docs/c.md", expires=time.time() - 1)
    put("k5", "docs/c.md")
    assert run(capsys, "cache", "purge", "--expired") == (0, "purged 1 cached answer(s)\n", "")
    assert run(capsys, "cache", "purge", "--doc", "docs/a.md", "--tenant", "acme")[1] == (
        "purged 1 cached answer(s)\n"
    )
    assert keys("k1", "k2", "k3", "k5") == ["k2", "k3", "k5"]
    assert run(capsys, "cache", "purge", "--doc", "docs/b.md", "docs/c.md")[1] == (
        "purged 2 cached answer(s)\n"
    )
    assert run(capsys, "cache", "purge", "--doc", "docs/a.md", "--doc", "docs/z.md")[1] == (
        "purged 1 cached answer(s)\n"
    )
    put("k6")
    put("k7", tenant=None)
    assert run(capsys, "cache", "purge", "--all") == (0, "purged 2 cached answer(s)\n", "")
    assert keys("k6", "k7") == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ((), "cache purge needs a filter (--tenant, --doc, --expired) or --all"),
        (("--all", "--tenant", "acme"), "--all purges every entry: give it alone"),
        (("--all", "--expired"), "--all purges every entry: give it alone"),
        (("--tenant", " "), "--tenant needs a non-empty tenant id"),
        (("--doc", ""), "--doc needs non-empty document ids"),
        (("--doc",), "expected at least one argument"),
        (("--everything",), "unrecognized arguments: --everything"),
    ],
)
def test_a_purge_without_a_filter_or_with_a_bad_one_deletes_nothing(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    put("k1", "docs/a.md")
    code, out, err = run(capsys, "cache", "purge", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("graphops: error: ") and fragment in err and err.count("\n") == 1
    assert keys("k1") == ["k1"]


def test_a_damaged_database_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    (isolated / "data").mkdir()
    (isolated / "data" / "graphops.sqlite").write_bytes(b"not a database " * 100)
    for argv in (("stats",), ("purge", "--all")):
        code, out, err = run(capsys, "cache", *argv)
        assert (code, out) == (1, "")
        assert err.startswith("graphops: error: the database ") and "damaged" in err
        assert err.count("\n") == 1


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(f"# {name}\n\n{text}\n", encoding="utf-8")


def test_ingest_purges_the_entries_citing_a_changed_or_removed_document(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    docs = isolated / "docs"
    docs.mkdir()
    for name in ("limits.md", "cache.md", "retry.md"):
        write(docs, name, f"What {name} says.")
    code, out, _ = run(capsys, "ingest", "docs")
    assert code == 0, out
    assert out.splitlines()[-1] == "purged 0 cached answer(s) citing a changed document"

    put("k1", "docs/limits.md")
    put("k2", "docs/cache.md", "docs/limits.md", tenant="globex")
    put("k3", "docs/cache.md")
    put("k4", "docs/retry.md")
    put("k5", "https://example.com/elsewhere.md")
    code, out, _ = run(capsys, "ingest", "docs")  # nothing changed: nothing purged
    assert "unchanged 3 documents" in out and "purged" not in out
    write(docs, "limits.md", "What limits.md says now.")
    code, out, err = run(capsys, "ingest", "docs")
    assert (code, err) == (0, "")
    assert "updated 1," in out
    assert out.splitlines()[-1] == "purged 2 cached answer(s) citing a changed document"
    assert keys("k1", "k2", "k3", "k4", "k5") == ["k3", "k4", "k5"]

    (docs / "retry.md").unlink()
    code, out, _ = run(capsys, "ingest", "docs")
    assert "removed 1" in out
    assert out.splitlines()[-1] == "purged 1 cached answer(s) citing a changed document"
    assert keys("k3", "k4", "k5") == ["k3", "k5"]


def test_a_failed_purge_warns_and_the_ingest_still_succeeds(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    docs = isolated / "docs"
    docs.mkdir()
    write(docs, "limits.md", "What limits says.")
    (isolated / "data").mkdir()
    (isolated / "data" / "graphops.sqlite").write_bytes(b"not a database " * 100)
    code, out, err = run(capsys, "ingest", "docs")
    assert code == 0
    assert out.startswith("added 1, updated 0, removed 0") and "purged" not in out
    assert err.startswith("graphops: warning: the answer cache was not purged (the database ")
    assert "damaged" in err and "corpus version is part of every key" in err
    assert err.count("\n") == 1
