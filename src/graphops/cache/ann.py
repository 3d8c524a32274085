"""The Faiss index a semantic partition keeps: exact while small, inverted lists once large.

A partition starts with an exact index (:func:`flat_index`: every vector held in
16-bit floats and compared on each search). Exact search reads the whole
partition, about 8 to 10 ms at 100,000 vectors of 384 dimensions on one core
here, so from :data:`IVF_FROM` vectors on the partition is re-built as an
inverted-file index (:func:`ivf_index`, Faiss' ``IndexIVFScalarQuantizer``,
still 16-bit floats): k-means puts the vectors in ``sqrt(n)`` lists and a
search reads only the lists nearest the question, one list in eight (at least
16), about 1.5 ms at 100,000.

What approximate search costs a cache is hits, never correctness: a neighbour
in a list that is not read is simply not found, the lookup misses and the run
goes on; whatever is found is still decided on its exact similarity by
:mod:`graphops.cache.decide`. benchmarks/cache.py counts the hits of both kinds
of index on the same queries.

The index is re-built again when the partition has grown enough that its lists
are four times as long as a fresh build would make them (:func:`due`); the
decision reads the index alone, so it survives restarts. The vectors come back
out of the index itself (:func:`contents`), never from the scalar store.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["IVF_FROM", "built_index", "contents", "due", "flat_index", "ivf_index", "one_thread"]

IVF_FROM = 20_000
"""The partition size from which it is searched through inverted lists."""
_PROBE_SHARE = 8  # a search reads one list in this many (at least _MIN_PROBE lists)
_MIN_PROBE = 16
_TRAIN_PER_LIST = 40  # k-means sees at most this many vectors per list (Faiss asks for 39)
_GROWTH = 2.0  # re-build when sqrt(n) has outgrown the lists by this factor (n by its square)


def one_thread() -> None:
    """Run Faiss on one OpenMP thread in this process.

    A single query gains nothing from threads (on two cores here an exact
    search took 40 ms against 22 ms on one), and a k-means build on one thread
    leaves the other core to the requests.
    """
    import faiss

    faiss.omp_set_num_threads(1)


def flat_index(dimension: int) -> Any:
    """An exact index that holds vectors in 16-bit floats, searched on one thread.

    GPTCache's own choice (``IDMap,Flat``, 32-bit floats) reads 150 MB per search
    at 100,000 entries of 384 dimensions: about 22 ms on one core here, 40 ms on
    two (a single query gains nothing from threads). Half precision halves that,
    stays exact to the ranking (cosine similarities move by about 1e-3), needs no
    training, and still supports removing rows.
    """
    import faiss

    return faiss.index_factory(dimension, "IDMap,SQfp16", faiss.METRIC_L2)


def lists_for(count: int) -> int:
    """How many inverted lists a partition of ``count`` vectors is built with."""
    return max(1, int(math.sqrt(count)))


def due(index: Any) -> bool:
    """Whether ``index`` should be re-built as inverted lists for its current size."""
    import faiss

    count = int(index.ntotal)
    if count < IVF_FROM:
        return False
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # an exact index
        return True
    return bool(lists_for(count) >= _GROWTH * ivf.nlist)


def contents(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` held by an index of either kind, vectors as float32."""
    import faiss

    dimension = int(index.d)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        inner = faiss.downcast_index(index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.empty((0, dimension))
        return faiss.vector_to_array(index.id_map).astype("int64"), vectors.astype("float32")
    ids, chunks = [], []
    lists: Any = ivf.invlists  # never None on a built index
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if not size:
            continue
        ids.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
        codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size).copy()
        chunks.append(codes.view(np.float16).reshape(size, dimension).astype("float32"))
    if not ids:
        return np.empty(0, dtype="int64"), np.empty((0, dimension), dtype="float32")
    return np.concatenate(ids).astype("int64"), np.concatenate(chunks)


def built_index(dimension: int, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """The index a partition of these vectors gets: inverted lists from :data:`IVF_FROM`
    on, else exact (what a partition re-made from its stored embeddings starts with)."""
    if len(ids) >= IVF_FROM:
        return ivf_index(ids, vectors)
    index = flat_index(dimension)
    index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids))
    return index


def ivf_index(ids: np.ndarray, vectors: np.ndarray) -> Any:
    """An inverted-file index over ``vectors`` (float32 rows) under ``ids``.

    The vectors are stored as they are, in 16-bit floats, not as residuals from
    their list's centroid, so :func:`contents` can read them back exactly as
    stored. k-means trains on an evenly spaced sample of at most
    40 vectors per list; that bounds the build to about a second on one core at
    100,000 vectors.
    """
    import faiss

    count, dimension = vectors.shape
    lists = lists_for(count)
    quantizer: Any = faiss.IndexFlatL2(dimension)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dimension, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2
    )
    index.own_fields = True
    quantizer.this.disown()  # the index owns its quantizer now
    index.by_residual = False
    step = max(1, count // (lists * _TRAIN_PER_LIST))
    index.cp.niter = 10
    index.train(np.ascontiguousarray(vectors[::step]))
    index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids))
    index.nprobe = min(lists, max(_MIN_PROBE, lists // _PROBE_SHARE))
    return index
