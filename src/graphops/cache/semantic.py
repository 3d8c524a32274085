"""The semantic tier: similar questions found with GPTCache's data manager.

GPTCache is configured explicitly, never by its ``init`` defaults: our MiniLM
embeddings (the retriever's), a GPTCache ``SQLStorage`` scalar store (SQLite
by default, any SQLAlchemy URL GPTCache supports, Postgres among them) and one
GPTCache ``Faiss`` vector store **per partition**, whose index holds its
vectors in half precision, exact while the partition is small and inverted
lists from 20,000 entries on (:mod:`graphops.cache.ann`).
The partition is the hash of every field of the exact key but the question
(tenant, access scope, user when private, graph, prompt versions, model chain,
corpus version): a search only
ever sees its own partition's vectors, so no other tenant's question can come
back, whatever is asked, and a search's time depends on its own partition's
size only. Scope text is never mixed into the embedded question
(semantic-router#2134 leaked another user's answer that way).

The tier only finds candidates: ``(similarity, key)`` pairs, best first, where
``key`` is the exact tier's key of the entry that holds the answer. Whether a
candidate may answer is decided by :mod:`graphops.cache.decide`, and the answer
itself, its TTL and its purge live in the answer store; a candidate whose
entry is gone is dropped from the index when it is next found.

GPTCache's own eviction is off (``no_op_eviction``): its in-memory LRU would
count the shared scalar store's rows for every partition. GPTCache's Faiss
index lives in memory and is written to ``<directory>/<partition>.faiss`` by
:meth:`SemanticTier.flush` (and at most every ``flush_s`` seconds as entries
are added); a partition with no index file is rebuilt from the scalar store's
embeddings the first time it is searched. Entries added after a partition's
last flush are not in its file: after a crash they are found by the exact tier
only, until they expire. Several processes each keep their own Faiss copy: one
process's new entries reach another's searches only after it restarts.

Every module GPTCache would import lazily is a declared dependency of graphops
(faiss-cpu, sqlalchemy, cachetools, requests, numpy), and
:func:`no_runtime_installs` makes GPTCache's ``pip install`` fail loudly
instead of running, so nothing is ever installed at run time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from graphops.cache.ann import built_index, contents, due, flat_index, ivf_index, one_thread
from graphops.errors import ConfigurationError, StorageError

__all__ = ["SemanticTier", "no_runtime_installs"]

_log = logging.getLogger("graphops.cache")
_TABLE = "graphops_semantic"


def no_runtime_installs() -> None:
    """Make GPTCache's run-time ``pip install`` raise instead of installing.

    GPTCache calls ``prompt_install`` (``pip install -q <package>``) when a
    module it wants is missing; graphops declares every one it uses, so a call
    means a broken install, which must fail, not change the environment.
    """
    import gptcache.utils
    import gptcache.utils.dependency_control as control

    def refuse(package: str, warn: bool = False) -> None:
        raise ConfigurationError(
            f"GPTCache asked to pip install {package!r} at run time; graphops never installs "
            "anything while running: install graphops' declared dependencies"
        )

    control.prompt_install = refuse
    gptcache.utils.prompt_install = refuse  # the name _check_library calls


class SemanticTier:
    """Candidates for a question among similar cached questions, per partition.

    ``embeddings`` embeds questions (use the retriever's: one model loaded);
    ``url`` is GPTCache's scalar store (a SQLAlchemy URL; default a SQLite file
    in ``directory``); ``directory`` holds the partitions' Faiss files.
    ``top_k`` candidates are returned per search. ``flush_s``: the longest a
    new entry waits before its partition's index is written to disk.
    """

    def __init__(
        self,
        embeddings: Embeddings,
        directory: str | Path,
        *,
        url: str | None = None,
        top_k: int = 4,
        flush_s: float = 30.0,
    ) -> None:
        if not isinstance(embeddings, Embeddings):
            raise ConfigurationError(
                f"SemanticTier takes LangChain Embeddings, not {type(embeddings).__name__}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigurationError(f"SemanticTier.top_k is {top_k!r}: give at least 1")
        self.embeddings = embeddings
        self.directory = Path(directory)
        self.url = url or f"sqlite:///{self.directory / 'semantic.sqlite'}"
        self.top_k = top_k
        self.flush_s = flush_s
        self._dimension: int | None = None
        self._scalar: Any = None
        self._managers: dict[str, Any] = {}
        self._keys: dict[tuple[str, int], str] = {}
        self._empty: set[str] = set()  # partitions found with no rows (not asked again)
        self._dirty: dict[str, float] = {}  # partition -> when it first changed since a flush
        # partitions being re-built outside the lock: what changed meanwhile (added, removed)
        self._pending: dict[str, tuple[list[Any], list[int]]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ public
    def embed(self, question: str) -> np.ndarray:
        """The question's unit vector (what :meth:`search` and :meth:`add` take)."""
        vector = np.asarray(self.embeddings.embed_query(question), dtype="float32")
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def search(self, partition: str, vector: np.ndarray) -> list[tuple[float, str]]:
        """``(cosine similarity, entry key)`` of the nearest questions in ``partition``.

        A question that embeds to nothing (no word the model knows) has no neighbours.
        """
        if not np.any(vector):
            return []
        with self._storage(), self._lock:
            manager = self._manager(partition, create=False)
            if manager is None:
                return []
            found = manager.search(vector, top_k=self.top_k) or []
            out = []
            for distance, row in found:
                if row < 0:  # Faiss pads a short result with -1
                    continue
                key = self._key_of(partition, manager, int(row))
                if key is not None:
                    # GPTCache's Faiss is L2 on unit vectors: d² = 2 - 2·cos
                    out.append((1.0 - float(distance) / 2.0, key))
            return out

    def add(self, partition: str, question: str, key: str, vector: np.ndarray) -> None:
        """Index ``question`` (its ``vector``) in ``partition``, pointing at entry ``key``.

        A zero vector is not indexed: it is similar to nothing.
        """
        if not np.any(vector):
            return
        with self._storage(), self._lock:
            from gptcache.manager.scalar_data.base import CacheData
            from gptcache.manager.vector_data.base import VectorData

            manager = self._manager(partition, create=True)
            data = vector.astype("float32")
            # GPTCache's import_data without its return-less shape: the row id is the link
            rows = self._scalar.batch_insert(
                [
                    CacheData(
                        question=question, answers=key, embedding_data=data, session_id=partition
                    )
                ]
            )
            added = VectorData(id=rows[0], data=data)
            manager.v.mul_add([added])
            if partition in self._pending:
                self._pending[partition][0].append(added)
            self._keys[(partition, int(rows[0]))] = key
            self._empty.discard(partition)
            self._dirty.setdefault(partition, time.monotonic())
            if time.monotonic() - self._dirty[partition] >= self.flush_s:
                self._flush(partition)
        self.reindex(partition)

    def forget(self, partition: str, rows: list[int]) -> None:
        """Drop rows from a partition's index and the scalar store (their entries are gone)."""
        with self._storage(), self._lock:
            manager = self._manager(partition, create=False)
            if manager is None or not rows:
                return
            manager.v.delete(rows)
            if partition in self._pending:
                self._pending[partition][1].extend(rows)
            self._scalar.mark_deleted(rows)
            for row in rows:
                self._keys.pop((partition, row), None)
            self._dirty.setdefault(partition, time.monotonic())

    def reindex(self, partition: str) -> bool:
        """Re-build ``partition``'s index as inverted lists when its size calls for it.

        :meth:`add` calls it; the k-means build (a few seconds at 100,000 entries)
        runs outside the tier's lock on a copy of the vectors, so searches go on
        against the old index meanwhile, and what was added or removed during the
        build is applied to the new index before it replaces the old one.
        Returns whether the index was replaced.
        """
        with self._lock:
            manager = self._managers.get(partition)
            if manager is None or partition in self._pending:
                return False
            index = manager.v._index
            if not due(index):
                return False
            ids, vectors = contents(index)
            self._pending[partition] = ([], [])
        try:
            built = ivf_index(ids, vectors)
        except Exception as exc:  # a failed build keeps the old index, which still answers
            _log.warning("semantic partition %s: re-build failed, kept: %s", partition, exc)
            with self._lock:
                self._pending.pop(partition, None)
            return False
        with self._lock:
            added, removed = self._pending.pop(partition)
            if added:
                built.add_with_ids(
                    np.asarray([a.data for a in added], dtype="float32"),
                    np.asarray([a.id for a in added], dtype="int64"),
                )
            if removed:
                gone = np.asarray(removed, dtype="int64")
                built.remove_ids(gone)
            manager.v._index = built
            self._dirty.setdefault(partition, time.monotonic())
        return True

    def count(self, partition: str) -> int:
        """How many questions ``partition``'s index holds."""
        with self._lock:
            manager = self._manager(partition, create=False)
            return 0 if manager is None else int(manager.v.count())

    def flush(self) -> None:
        """Write every changed partition's index to its file."""
        with self._storage(), self._lock:
            for partition in list(self._dirty):
                self._flush(partition)

    def close(self) -> None:
        """Flush, and let go of the scalar store's connections."""
        self.flush()
        with self._lock:
            if self._scalar is not None:
                self._scalar.close()
            self._scalar = None
            self._managers.clear()

    # ------------------------------------------------------------------ inside
    def _manager(self, partition: str, create: bool) -> Any:
        manager = self._managers.get(partition)
        if manager is not None:
            return manager
        path = self.directory / f"{partition}.faiss"
        if not create and not path.exists():
            if partition in self._empty:
                return None
            if not self._has_rows(partition):
                self._empty.add(partition)
                return None
        from gptcache.manager import VectorBase
        from gptcache.manager.data_manager import SSDataManager
        from gptcache.manager.eviction import EvictionBase

        dimension = self._dimension_of()
        one_thread()
        vectors = VectorBase("faiss", dimension=dimension, index_path=str(path), top_k=self.top_k)
        if not path.exists():
            vectors._index = flat_index(dimension)  # GPTCache's Faiss store, our index kind
        manager = SSDataManager(
            self._scalar_store(), vectors, None, EvictionBase("no_op_eviction"), 0, 0
        )
        if not path.exists():
            self._rebuild(partition, manager)
        self._managers[partition] = manager
        return manager

    def _scalar_store(self) -> Any:
        if self._scalar is None:
            no_runtime_installs()
            from gptcache.manager import CacheBase

            self.directory.mkdir(parents=True, exist_ok=True)
            name = "postgresql" if self.url.startswith("postgresql") else "sqlite"
            self._scalar = CacheBase(name, sql_url=_driver(self.url), table_name=_TABLE)
        return self._scalar

    def _dimension_of(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed("dimension").shape[0])
        return self._dimension

    def _has_rows(self, partition: str) -> bool:
        return bool(self._scalar_store().list_sessions(session_id=partition))

    def _rebuild(self, partition: str, manager: Any) -> None:
        """Make a partition's index from the scalar store's embeddings (of the right kind)."""
        rows = [r.id for r in self._scalar_store().list_sessions(session_id=partition)]
        ids, vectors = [], []
        for row in rows:
            cached = self._scalar.get_data_by_id(row)
            if cached is not None:
                ids.append(row)
                vectors.append(cached.embedding_data)
        if ids:
            manager.v._index = built_index(
                self._dimension_of(),
                np.asarray(ids, dtype="int64"),
                np.asarray(vectors, dtype="float32"),
            )
            self._dirty.setdefault(partition, time.monotonic())

    def _key_of(self, partition: str, manager: Any, row: int) -> str | None:
        key = self._keys.get((partition, row))
        if key is None:
            cached = manager.get_scalar_data((None, row))
            if cached is None:
                return None
            answer = cached.answers[0]
            key = str(answer[0] if isinstance(answer, tuple) else getattr(answer, "answer", answer))
            self._keys[(partition, row)] = key
        return key

    def _flush(self, partition: str) -> None:
        manager = self._managers.get(partition)
        if manager is not None:
            manager.v.flush()
        self._dirty.pop(partition, None)

    @contextmanager
    def _storage(self) -> Iterator[None]:
        """GPTCache's database errors as graphops' :class:`StorageError`."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except SQLAlchemyError as exc:
            raise StorageError(f"the semantic cache's store failed: {exc}") from exc


def _driver(url: str) -> str:
    from graphops.db.engine import sqlalchemy_url

    return sqlalchemy_url(url)
