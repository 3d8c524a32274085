"""A large partition is searched through inverted lists; nothing is lost on the way there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from graphops.cache import ann, semantic
from graphops.cache.semantic import SemanticTier
from graphops.models.hashing import HashEmbeddings

SMALL = 200  # IVF_FROM in these tests: a partition this large is re-built


def _unit(count: int, dimension: int = 32, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimension)).astype("float32")
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def small_ivf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "IVF_FROM", SMALL)


@pytest.fixture
def tier(tmp_path: Path) -> Any:
    made = SemanticTier(HashEmbeddings(), tmp_path / "semantic")
    yield made
    made.close()


def _word(number: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[number % 26] + letters[number // 26 % 26] + "x"


def _questions(count: int) -> list[str]:
    """Questions that embed apart: the hashing embedder counts words, not digits."""
    return [f"what about {_word(i)} and {_word(i * 7 + 3)} then" for i in range(count)]


def _fill(tier: SemanticTier, partition: str, questions: list[str], start: int = 0) -> None:
    for i, question in enumerate(questions, start):
        tier.add(partition, question, f"k{i}", tier.embed(question))


def test_contents_reads_back_what_either_kind_of_index_holds() -> None:
    vectors, ids = _unit(300), np.arange(10, 310, dtype="int64")
    flat = ann.flat_index(32)
    flat.add_with_ids(vectors, ids)
    flat.remove_ids(np.asarray([10, 11], dtype="int64"))
    got_ids, got = ann.contents(flat)
    assert sorted(got_ids.tolist()) == list(range(12, 310))
    assert np.abs(got - vectors[got_ids - 10]).max() < 1e-3  # half precision
    ivf = ann.ivf_index(got_ids, got)
    assert isinstance(ivf, faiss.IndexIVFScalarQuantizer) and ivf.ntotal == 298
    back_ids, back = ann.contents(ivf)
    order = np.argsort(back_ids)
    assert back_ids[order].tolist() == list(range(12, 310))
    assert np.abs(back[order] - vectors[back_ids[order] - 10]).max() < 1e-3
    empty_ids, empty = ann.contents(ann.flat_index(32))
    assert empty_ids.size == 0 and empty.shape == (0, 32)


def test_due_reads_the_size_from_the_index_alone(small_ivf: None) -> None:
    flat = ann.flat_index(32)
    flat.add_with_ids(_unit(SMALL - 1), np.arange(SMALL - 1, dtype="int64"))
    assert not ann.due(flat)
    flat.add_with_ids(_unit(1, seed=9), np.asarray([SMALL], dtype="int64"))
    assert ann.due(flat)
    ivf = ann.ivf_index(*ann.contents(flat))
    assert not ann.due(ivf)  # just built for this size
    assert ivf.nlist == ann.lists_for(SMALL) and ivf.nprobe == min(ivf.nlist, 16)
    grown = _unit(4 * SMALL, seed=11)  # 5x the vectors: the lists are too long now
    ivf.add_with_ids(grown, np.arange(1000, 1000 + len(grown), dtype="int64"))
    assert ann.due(ivf)


def test_a_large_partition_is_rebuilt_and_still_finds_forgets_and_survives_a_restart(
    small_ivf: None, tmp_path: Path
) -> None:
    questions = _questions(SMALL + 10)
    tier = SemanticTier(HashEmbeddings(), tmp_path)
    _fill(tier, "p", questions[:SMALL])
    assert isinstance(tier._managers["p"].v._index, faiss.IndexIVFScalarQuantizer)
    _fill(tier, "p", questions[SMALL:], SMALL)  # added to the inverted lists as usual
    for i in (0, SMALL - 1, SMALL + 5):
        [(similarity, key), *_] = tier.search("p", tier.embed(questions[i]))
        assert key == f"k{i}" and similarity == pytest.approx(1.0, abs=2e-3)
    tier.forget("p", [1])  # the first question's row
    assert tier.count("p") == SMALL + 9
    assert "k0" not in [k for _, k in tier.search("p", tier.embed(questions[0]))]
    tier.close()
    again = SemanticTier(HashEmbeddings(), tmp_path)  # from the partition's file
    assert again.search("p", again.embed(questions[7]))[0][1] == "k7"
    index = again._managers["p"].v._index
    assert isinstance(index, faiss.IndexIVFScalarQuantizer) and index.nprobe == min(index.nlist, 16)
    again.close()
    (tmp_path / "p.faiss").unlink()  # no file: re-built from the scalar store, as lists again
    rebuilt = SemanticTier(HashEmbeddings(), tmp_path)
    assert rebuilt.search("p", rebuilt.embed(questions[9]))[0][1] == "k9"
    assert isinstance(rebuilt._managers["p"].v._index, faiss.IndexIVFScalarQuantizer)
    rebuilt.close()


def test_what_is_added_or_forgotten_during_a_rebuild_is_kept(
    small_ivf: None, tier: SemanticTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    questions = _questions(SMALL + 1)
    with monkeypatch.context() as patch:
        patch.setattr(semantic, "due", lambda index: False)  # fill without re-building
        _fill(tier, "p", questions[:SMALL])
    real = semantic.ivf_index

    def build_while_others_write(ids: np.ndarray, vectors: np.ndarray) -> Any:
        # the tier's lock is free during the build: another writer gets in
        tier.add("p", questions[SMALL], "late", tier.embed(questions[SMALL]))
        tier.forget("p", [2])  # the second question's row
        return real(ids, vectors)

    monkeypatch.setattr(semantic, "ivf_index", build_while_others_write)
    assert tier.reindex("p")
    assert isinstance(tier._managers["p"].v._index, faiss.IndexIVFScalarQuantizer)
    assert tier.search("p", tier.embed(questions[SMALL]))[0][1] == "late"
    assert "k1" not in [k for _, k in tier.search("p", tier.embed(questions[1]))]
    assert tier.count("p") == SMALL and not tier._pending


def test_a_failed_rebuild_keeps_the_index_that_answers(
    small_ivf: None, tier: SemanticTier, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(ids: np.ndarray, vectors: np.ndarray) -> Any:
        raise RuntimeError("k-means ran out of memory")

    monkeypatch.setattr(semantic, "ivf_index", broken)
    questions = _questions(SMALL)
    _fill(tier, "p", questions)  # the last add tries the re-build, which fails
    assert "re-build failed" in caplog.text and not tier._pending
    index = tier._managers["p"].v._index
    assert not isinstance(index, faiss.IndexIVFScalarQuantizer) and index.ntotal == SMALL
    assert tier.search("p", tier.embed(questions[3]))[0][1] == "k3"
    assert not tier.reindex("missing")  # a partition never made: nothing to re-build
