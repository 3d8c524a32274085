from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from graphops.corpus.sources import FetchOptions, load_sources
from graphops.errors import IngestError, InvalidInputError


def test_folder_reads_supported_files_and_skips_hidden(corpus_dir: Path) -> None:
    (corpus_dir / ".hidden").mkdir()
    (corpus_dir / ".hidden" / "secret.md").write_text("# Secret")
    (corpus_dir / "image.png").write_bytes(b"\x89PNG")
    (source,) = load_sources([str(corpus_dir)])
    names = sorted(Path(d.id).name for d in source.documents)
    assert names == ["cache.md", "config.md", "notes.txt"]
    assert source.scope.endswith("corpus/")
    config = next(d for d in source.documents if d.id.endswith("config.md"))
    assert config.title == "Configuration"
    assert config.kind == "markdown"


def test_html_becomes_markdown_text(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Guide</title><style>p{}</style></head><body>"
        "<h2>Install</h2><p>Run <b>setup</b>.</p><script>alert(1)</script></body></html>"
    )
    (source,) = load_sources([str(page)])
    (document,) = source.documents
    assert document.title == "Guide"
    assert document.kind == "markdown"
    assert "## Install" in document.text
    assert "Run setup ." in document.text or "Run setup." in document.text
    assert "alert" not in document.text


@pytest.mark.parametrize(
    ("setup", "error", "fragment"),
    [
        (lambda p: None, InvalidInputError, "no such file"),
        (lambda p: p.write_text("x"), InvalidInputError, "unsupported file type"),
        (lambda p: p.mkdir(), InvalidInputError, "no .md"),
    ],
)
def test_bad_paths(tmp_path: Path, setup: object, error: type[Exception], fragment: str) -> None:
    target = tmp_path / "thing.pdf"
    setup(target)  # type: ignore[operator]
    with pytest.raises(error, match=fragment):
        load_sources([str(target)])


def test_non_utf8_file_names_the_file_and_offset(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.md"
    bad.write_bytes("# Café\n".encode("latin-1"))
    with pytest.raises(IngestError, match=r"latin1.md: not UTF-8 text \(bad byte at offset 5\)"):
        load_sources([str(bad)])


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission errors (root reads everything, so the denial is injected)."""
    locked = tmp_path / "locked.md"
    locked.write_text("# x")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(IngestError, match=r"locked\.md: cannot read: Permission denied"):
        load_sources([str(locked)])


def test_size_limit_and_empty_documents(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("a" * 2000)
    with pytest.raises(IngestError, match="larger than the 1000 byte limit"):
        load_sources([str(big)], FetchOptions(max_bytes=1000))
    empty = tmp_path / "empty.md"
    empty.write_text("   \n")
    with pytest.raises(IngestError, match="empty"):
        load_sources([str(empty)])


def test_nothing_to_ingest_and_other_schemes() -> None:
    with pytest.raises(InvalidInputError, match="nothing to ingest"):
        load_sources([])
    with pytest.raises(InvalidInputError, match="only http"):
        load_sources(["ftp://example.org/a.md"])


def _mock(handler: object) -> FetchOptions:
    return FetchOptions(transport=httpx.MockTransport(handler), max_bytes=1000)  # type: ignore[arg-type]


def test_url_fetch_with_content_types() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/page":
            return httpx.Response(200, html="<title>T</title><h1>Hello</h1>")
        if request.url.path == "/doc.md":
            return httpx.Response(
                200, text="# Notes\n\nbody", headers={"content-type": "text/markdown"}
            )
        if request.url.path == "/blob":
            return httpx.Response(200, content=b"\x00", headers={"content-type": "application/pdf"})
        if request.url.path == "/UPPER.MD":
            return httpx.Response(200, text="# Shout", headers={"content-type": "x/unknown"})
        if request.url.path == "/big":
            return httpx.Response(200, text="a" * 5000, headers={"content-type": "text/plain"})
        return httpx.Response(404)

    options = _mock(handler)
    page, doc = load_sources(["http://site/page", "http://site/doc.md"], options)
    assert page.documents[0].title == "T"
    assert page.documents[0].id == "http://site/page"
    assert doc.documents[0].title == "Notes"
    (upper,) = load_sources(["http://site/UPPER.MD"], options)
    assert upper.documents[0].title == "Shout"
    with pytest.raises(IngestError, match="unsupported content type application/pdf"):
        load_sources(["http://site/blob"], options)
    with pytest.raises(IngestError, match="HTTP 404"):
        load_sources(["http://site/missing"], options)
    with pytest.raises(IngestError, match="larger than the 1000 byte limit"):
        load_sources(["http://site/big"], options)


def test_url_connect_timeout_is_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    with pytest.raises(IngestError, match=r"no connection within 10 s"):
        load_sources(["http://site/x"], _mock(handler))


@pytest.fixture
def slow_server() -> Iterator[str]:
    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(1.0)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/doc.md"
    server.shutdown()
    server.server_close()


def test_real_read_timeout(slow_server: str) -> None:
    with pytest.raises(IngestError, match=r"no response within 0.2 s"):
        load_sources([slow_server], FetchOptions(read_timeout=0.2))
