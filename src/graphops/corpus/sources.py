"""Reading source documents: a folder of .md/.txt/.html files, single files, URLs.

Every failure is an :class:`IngestError` or :class:`InvalidInputError` naming the
source, raised before anything is written, so a bad source never leaves a
half-updated index. HTML is reduced to text with its headings kept as markdown
headings, so one chunker serves every format.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

import httpx

from graphops.errors import IngestError, InvalidInputError

__all__ = ["FetchOptions", "Source", "SourceDocument", "load_sources"]

Kind = Literal["markdown", "text", "html"]
_SUFFIXES: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
}
_CONTENT_TYPES: dict[str, Kind] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/html": "html",
    "application/xhtml+xml": "html",
}


@dataclass(frozen=True)
class SourceDocument:
    """One document as read: its id (relative path or URL), title and plain text."""

    id: str
    title: str
    text: str
    kind: Kind

    @property
    def content_hash(self) -> str:
        """Changes exactly when the text does: what the index uses to skip re-embedding."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Source:
    """What one ingest target yielded: its documents and the id prefix it owns.

    A folder owns every id under it, so a file deleted from the folder is dropped
    from the index on the next ingest of that folder.
    """

    scope: str
    documents: tuple[SourceDocument, ...]


@dataclass(frozen=True)
class FetchOptions:
    """Limits for reading sources; the defaults are the seed loader's (10 s, 30 s)."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_bytes: int = 5_000_000
    transport: httpx.BaseTransport | None = None


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCK = frozenset({"p", "div", "li", "br", "tr", "section", "article", "pre", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "title":
            self._in_title = False
        elif (len(tag) == 2 and tag[0] == "h") or tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title += data
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def _html_to_text(html: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = [re.sub(" {2,}", " ", line).strip() for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return parser.title.strip(), text.strip()


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def _document(doc_id: str, raw: str, kind: Kind, fallback_title: str) -> SourceDocument:
    if kind == "html":
        title, text = _html_to_text(raw)
        return SourceDocument(doc_id, title or _title(text, fallback_title), text, "markdown")
    return SourceDocument(doc_id, _title(raw, fallback_title), raw.strip(), kind)


def _doc_id(path: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _read_file(path: Path, options: FetchOptions) -> SourceDocument:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix or '(none)'}: use {', '.join(_SUFFIXES)}"
        )
    try:
        if path.stat().st_size > options.max_bytes:
            raise IngestError(f"{path}: larger than the {options.max_bytes} byte limit")
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    return _document(_doc_id(path), text, kind, path.stem.replace("-", " ").replace("_", " "))


def _walk(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix.lower() in _SUFFIXES:
            yield path


def _fetch(url: str, options: FetchOptions) -> SourceDocument:
    timeout = httpx.Timeout(
        options.read_timeout, connect=options.connect_timeout, pool=options.connect_timeout
    )
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=True, transport=options.transport
            ) as client,
            client.stream("GET", url, headers={"user-agent": "graphops-ingest"}) as response,
        ):
            if response.status_code >= 400:
                raise IngestError(f"{url}: HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            kind = _CONTENT_TYPES.get(content_type) or _SUFFIXES.get(
                Path(url.split("?")[0]).suffix.lower()
            )
            if kind is None:
                raise IngestError(f"{url}: unsupported content type {content_type or '(none)'}")
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > options.max_bytes:
                    raise IngestError(f"{url}: larger than the {options.max_bytes} byte limit")
            encoding = response.charset_encoding or "utf-8"
    except httpx.ConnectTimeout:
        raise IngestError(f"{url}: no connection within {options.connect_timeout:g} s") from None
    except httpx.TimeoutException:
        raise IngestError(f"{url}: no response within {options.read_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise IngestError(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        text = bytes(body).decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise IngestError(f"{url}: not decodable as {encoding}") from None
    return _document(url, text, kind, url.rstrip("/").rsplit("/", 1)[-1] or url)


def _load_one(target: str, options: FetchOptions) -> Source:
    if target.startswith(("http://", "https://")):
        return Source(target, (_fetch(target, options),))
    if "://" in target:
        raise InvalidInputError(f"{target}: only http:// and https:// URLs are supported")
    path = Path(target).expanduser()
    if path.is_dir():
        documents = tuple(_read_file(p, options) for p in _walk(path))
        if not documents:
            raise InvalidInputError(f"{target}: no {'/'.join(_SUFFIXES)} files in this folder")
        scope = _doc_id(path)
        return Source(scope if scope.endswith("/") else scope + "/", documents)
    if path.is_file():
        document = _read_file(path, options)
        return Source(document.id, (document,))
    if path.exists():
        raise InvalidInputError(f"{target}: not a regular file or folder")
    raise InvalidInputError(f"{target}: no such file or folder")


def load_sources(targets: Sequence[str], options: FetchOptions | None = None) -> list[Source]:
    """Read every target (folder, file or URL) or raise on the first bad one."""
    if not targets:
        raise InvalidInputError("nothing to ingest: give at least one path or URL")
    options = options or FetchOptions()
    sources = [_load_one(target, options) for target in targets]
    for source in sources:
        for document in source.documents:
            if not document.text.strip():
                raise IngestError(f"{document.id}: the document is empty")
    return sources
