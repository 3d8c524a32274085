"""Making sure an index exists before the first question.

On embedded defaults nobody should have to run ``graphops ingest`` first: the
first question ingests the configured corpus (``GRAPHOPS_CORPUS``, ``docs`` by
default). An index built with another embedding model is refused rather than
searched with vectors of the wrong space.

Building is serialised across processes by an advisory lock on
``<data_dir>/index.lock``: of several first questions asked at once, one builds
the index and the others wait for it and then use it, instead of each embedding
the whole corpus and overwriting the others' index. ``graphops ingest`` takes the
same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator

from langchain_core.embeddings import Embeddings

from graphops.corpus.index import CorpusIndex, Manifest
from graphops.corpus.ingest import IngestReport, Progress, embeddings_name, ingest
from graphops.corpus.sources import FetchOptions
from graphops.errors import CorpusIndexError
from graphops.settings import Settings

__all__ = ["ensure_index", "fetch_options", "index_lock", "ingest_with_settings"]

_log = logging.getLogger(__name__)


def fetch_options(settings: Settings) -> FetchOptions:
    """The source-reading limits the settings ask for."""
    return FetchOptions(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        max_bytes=settings.max_source_bytes,
    )


@contextlib.contextmanager
def index_lock(settings: Settings) -> Iterator[None]:
    """Hold the data dir's index lock (blocking until another process releases it).

    ``flock`` is released by the kernel when its holder exits, so a process killed
    mid-ingest never leaves a stale lock behind.
    """
    path = settings.data_dir / "index.lock"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as exc:
        raise CorpusIndexError(
            f"cannot open the index lock {path} ({exc.strerror or type(exc).__name__}): "
            "make GRAPHOPS_DATA_DIR a writable directory"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info("waiting for another process to finish indexing (%s)", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ingest_with_settings(
    targets: list[str], settings: Settings, embeddings: Embeddings, progress: Progress | None = None
) -> IngestReport:
    """:func:`ingest` with every option taken from ``settings``, under :func:`index_lock`."""
    with index_lock(settings):
        return _ingest(targets, settings, embeddings, progress)


def _ingest(
    targets: list[str], settings: Settings, embeddings: Embeddings, progress: Progress | None
) -> IngestReport:
    return ingest(
        targets,
        settings.index_dir,
        embeddings,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        fetch=fetch_options(settings),
        progress=progress,
    )


def ensure_index(
    settings: Settings, embeddings: Embeddings, progress: Progress | None = None
) -> IngestReport | None:
    """Ingest ``settings.corpus`` if there is no index yet; return its report, else None.

    When another process is building the index, wait for it and use its index.
    """
    if CorpusIndex.exists(settings.index_dir):
        _check_built_alike(settings, embeddings)
        return None
    if not settings.corpus:
        raise CorpusIndexError(
            "there is no index and GRAPHOPS_CORPUS is empty: run 'graphops ingest PATH'"
        )
    with index_lock(settings):
        if CorpusIndex.exists(settings.index_dir):  # built while this process waited
            _check_built_alike(settings, embeddings)
            return None
        return _ingest(list(settings.corpus), settings, embeddings, progress)


def _check_built_alike(settings: Settings, embeddings: Embeddings) -> None:
    """Refuse an index built with other embeddings or chunking than the settings say."""
    try:
        manifest = Manifest.from_json(
            json.loads((settings.index_dir / "manifest.json").read_text())
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise CorpusIndexError(
            f"the index in {settings.index_dir} is unreadable: delete it and run 'graphops ingest'"
        ) from None
    built_with, wanted = manifest.embeddings_model, embeddings_name(embeddings)
    chunking = (manifest.chunk_size, manifest.chunk_overlap)
    if built_with != wanted:
        raise CorpusIndexError(
            f"the index in {settings.index_dir} was built with {built_with}, but the "
            f"configured embeddings are {wanted}: run 'graphops ingest' again"
        )
    if chunking != (settings.chunk_size, settings.chunk_overlap):
        raise CorpusIndexError(
            f"the index in {settings.index_dir} was chunked {chunking[0]}/{chunking[1]}, "
            f"the settings say {settings.chunk_size}/{settings.chunk_overlap} "
            "(GRAPHOPS_CHUNK_SIZE/GRAPHOPS_CHUNK_OVERLAP): run 'graphops ingest' again"
        )
